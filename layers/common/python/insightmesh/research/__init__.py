"""Long research runs on Lambda durable functions: the run records, the durable workflows
(``profile``, and rendering a report an agent wrote), progress in Slack, PDF reports, delivery."""
