"""The HTML pages of the Google connect callback: a result page and an error page.

Every value placed in a page goes through :func:`render`, which HTML-escapes it (quotes
included), so a credential named ``<script>alert(1)</script>`` shows as that text. The pages
carry no script and load nothing: they are served with ``Content-Security-Policy: default-src
'none'`` (their one inline style allowed by its hash), ``X-Content-Type-Options: nosniff`` and
``Cache-Control: no-store`` (:func:`html_headers`).
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable
from string import Template
from typing import Final

from insightmesh.credentials.schemas import GOOGLE_SCOPE_PREFIX, CredentialSummary

CONTENT_TYPE: Final = "text/html; charset=utf-8"
# The console's page the flow starts from, on the same origin (the browser came back from Google to it).
CONSOLE_CREDENTIALS: Final = "/console/credentials"
_STYLE: Final = ("body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;"
                 "line-height:1.5;color:#1f2328}h1{font-size:1.4rem}code{background:#f6f8fa;padding:0 .2rem}"
                 ".muted{color:#59636e;font-size:.9rem}")
_STYLE_HASH: Final = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY: Final = (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
                                  "form-action 'none'; frame-ancestors 'none'")

_PAGE: Final = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>$title</title>
<style>$style</style>
</head>
<body>
<h1>$title</h1>
$body
<p class="muted">Request id: <code>$request_id</code></p>
</body>
</html>
""")


def _escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def render(title: str, body_html: str, *, request_id: str) -> str:
    """A page: ``title`` and ``request_id`` are escaped here; ``body_html`` must have been built
    from escaped values (the page functions below do so)."""
    return _PAGE.substitute(title=_escape(title), style=_STYLE, body=body_html, request_id=_escape(request_id or "-"))


def _scope_label(scope: str) -> str:
    return scope.removeprefix(GOOGLE_SCOPE_PREFIX)


def _list(items: Iterable[str]) -> str:
    return "<ul>" + "".join(f"<li><code>{_escape(item)}</code></li>" for item in items) + "</ul>"


def connected_page(summary: CredentialSummary, *, request_id: str) -> str:
    """The page shown after a credential was connected and stored."""
    body = (f"<p>The Google credential <strong>{_escape(summary.name)}</strong> is connected "
            f"(id <code>{_escape(summary.id)}</code>) with these scopes:</p>"
            + _list(_scope_label(scope) for scope in summary.scopes))
    if not summary.refreshable:
        body += ("<p>Google gave no refresh token: the credential will expire with its access token. "
                 "Connect it again to renew it.</p>")
    body += f'<p><a href="{CONSOLE_CREDENTIALS}">Back to the credentials</a> in the console.</p>'
    return render("Google credential connected", body, request_id=request_id)


def error_page(message: str, *, request_id: str) -> str:
    """The page shown when the callback is refused: nothing was stored."""
    body = (f"<p>{_escape(message)}</p>"
            f'<p>Nothing was stored. Start the connection again from <a href="{CONSOLE_CREDENTIALS}">the '
            "credentials</a> in the console.</p>")
    return render("The Google credential was not connected", body, request_id=request_id)


def html_headers() -> dict[str, str]:
    """The headers every page is served with (the resolver adds its security headers too)."""
    return {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


__all__ = ["CONTENT_SECURITY_POLICY", "CONTENT_TYPE", "connected_page", "error_page", "html_headers", "render"]
