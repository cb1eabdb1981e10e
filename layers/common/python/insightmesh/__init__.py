"""InsightMesh shared library, shipped to every function as the `CommonLayer` Lambda layer.

Organised by bounded context (see ARCHITECTURE.md): `config`, `observability`, `api`,
`resilience` and `aws` are cross-cutting; `health` is the first domain context.
"""

__version__ = "0.1.0"
