"""InsightMesh shared library, shipped to every function as the `CommonLayer` Lambda layer.

Organised by bounded context in three layers — platform, domain, application — whose imports
point one way (see docs/architecture.md and the README's Layers section; tests/unit/test_layout.py
enforces it).
"""

__version__ = "0.1.0"
