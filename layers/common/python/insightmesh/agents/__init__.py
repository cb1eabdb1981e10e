"""Agents: the registry of named agents (``catalog``) and, elsewhere in this package, their code."""
