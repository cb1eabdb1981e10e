"""Budgets: cost limits per period on a workspace, a group, a user or an agent (issue 16).

* ``models`` — the budget definitions and alert markers, in the usage table beside the counters.
* ``check`` — the conversation worker's check before an agent runs (and a research run's before
  each LLM step): go on, move to a cheaper fallback model near the limit, or refuse at the limit
  (one BatchGetItem, cached a few seconds).
* ``alerts`` — the admins told once per budget per period.
* ``settings`` — ``BUDGET_CACHE_SECONDS``, ``BUDGET_ALERT_CHANNEL``.

The admin API (``/api/budgets``) is :mod:`insightmesh.admin.budgets`. Import the submodules
directly; this package imports nothing so that importing it stays cheap.
"""
