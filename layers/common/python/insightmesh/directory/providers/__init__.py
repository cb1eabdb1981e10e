"""Directory providers: the job types that mirror users and groups from Slack and Google Workspace."""
