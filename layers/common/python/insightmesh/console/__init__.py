"""The browser console (application layer): server-rendered pages that are a client of /api.

* ``api`` — :class:`InProcessApi`: the one path to the data, the admin and tasks APIs' own
  resolver apps called in-process with the browser's cookie and CSRF token (injected by
  ``functions/console``; this context never imports ``admin``);
* ``app`` — the console's resolver: HTML error pages, the Content-Security-Policy, forms;
* ``pages`` — the routes: sign-in (login links, OIDC), My access, Groups;
* ``assets`` — static files fingerprinted by content hash; ``templates/`` — Jinja2, autoescaped.
"""

from insightmesh.console.app import build_console_app

__all__ = ["build_console_app"]
