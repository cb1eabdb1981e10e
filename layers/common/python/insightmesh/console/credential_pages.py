"""The console's Credentials page (admins): the Google credentials with their status, connecting a
new one (the OAuth flow) and deleting one after a confirmation.

Connecting: the form posts to the console, which asks ``POST /api/credentials/google/authorize``.
The API answers Google's consent URL and sets the signed ``im_connect`` cookie that binds the flow
to this browser (the callback refuses a browser without it), so the console passes that cookie on
and sends the browser to the URL. It does so with a page that refreshes to the URL (and links it),
not with a 303: Chromium applies the CSP's ``form-action 'self'`` to the redirects of a form's
submission, so a 303 from this form to Google would be blocked — a meta refresh is a navigation, not
a submission, and keeps the strict CSP unchanged. What the API refuses (Google not configured: 503;
an invalid name or scope: 422) is shown in place, with the form's values kept.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qs

from aws_lambda_powertools.event_handler import Response
from pydantic import Field

from insightmesh.auth.sessions import RawCookie
from insightmesh.console.api import ApiFailure
from insightmesh.console.app import PAGE_SIZE, ConsoleResolver, Session, _Form, redirect
from insightmesh.credentials.schemas import GOOGLE_SCOPES, MAX_NAME_LENGTH

SCOPE_LABELS: Final = {
    "drive.readonly": "Drive, read only (knowledge sync)",
    "admin.directory.user.readonly": "Directory users, read only",
    "admin.directory.group.readonly": "Directory groups, read only",
    "admin.directory.group.member.readonly": "Directory group members, read only",
}


class ConnectForm(_Form):
    name: str = Field(min_length=1, max_length=4 * MAX_NAME_LENGTH)
    scopes: list[str] = Field(min_length=1, max_length=len(GOOGLE_SCOPES))


def register(app: ConsoleResolver) -> None:
    """Add the Credentials routes to ``app``."""

    def posted() -> dict[str, Any]:
        """The form, with ``scopes`` as the list of every box ticked (``app.form`` keeps one value a field)."""
        fields = parse_qs(app.current_event.decoded_body or "", max_num_fields=20)
        values: dict[str, Any] = {key: items[0] for key, items in fields.items() if key != "scopes"}
        values["scopes"] = fields.get("scopes", [])
        return values

    def credentials_page(session: Session, error: ApiFailure | None = None,
                         values: dict[str, Any] | None = None) -> Response[str]:
        cursor = app.query("cursor") or ""
        listing = app.fetch("/api/credentials", session=session, query={"limit": str(PAGE_SIZE), "cursor": cursor})
        return app.page("credentials.html", session=session, credentials=listing["items"],
                        next_cursor=listing.get("next_cursor"), request_cursor=cursor, error=error,
                        values=values or {"scopes": ["drive.readonly"]}, scope_labels=SCOPE_LABELS)

    @app.get("/console/credentials")
    def _credentials() -> Response[str]:
        return credentials_page(app.signed_in())

    @app.post("/console/credentials/connect")
    def _connect() -> Response[str]:
        session, raw = app.signed_in(), posted()
        form = app.validated(ConnectForm, raw, lambda error: credentials_page(session, error, raw))
        answer = app.call("POST", "/api/credentials/google/authorize", body={"name": form.name, "scopes": form.scopes},
                          csrf_token=form.csrf_token)
        if answer.status in (401, 403):
            return app.failure(answer.error, session=session)
        if not answer.ok:
            return credentials_page(session, answer.error, raw)
        page = app.page("connect.html", session=session, url=answer.body["authorization_url"],
                        expires_at=answer.body.get("state_expires_at"))
        page.cookies.extend(RawCookie(cookie) for cookie in answer.set_cookies)
        return page

    @app.get("/console/credentials/<credential_id>/delete")
    def _confirm_delete(credential_id: str) -> Response[str]:
        session = app.signed_in()
        credential = app.fetch(f"/api/credentials/{credential_id}", session=session)
        return app.page("confirm.html", session=session, title="Delete a credential",
                        question=f"Delete the credential “{credential['name']}”? Its access is revoked at Google and "
                                 "the jobs that use it fail until they are given another one.",
                        action=f"/console/credentials/{credential_id}/delete", button="Delete credential",
                        cancel="/console/credentials")

    @app.post("/console/credentials/<credential_id>/delete")
    def _delete(credential_id: str) -> Response[str]:
        session = app.signed_in()
        answer = app.call("DELETE", f"/api/credentials/{credential_id}", csrf_token=app.form().get("csrf_token", ""))
        if answer.ok:
            # Google unreachable: deleted all the same, and the admin is told to revoke it in the account.
            notice = "credential-deleted" if answer.body.get("revoked") else "credential-deleted-unrevoked"
            return redirect(f"/console/credentials?notice={notice}")
        if answer.status in (401, 403):
            return app.failure(answer.error, session=session)
        return credentials_page(session, answer.error)


__all__ = ["register"]
