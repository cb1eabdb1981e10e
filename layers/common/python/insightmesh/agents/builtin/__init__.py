"""The built-in agents: ``assistant`` (the default), ``help`` and ``meddic``."""
