"""The console's Users pages (admins): search by e-mail prefix, and one user's identities, groups,
usable agents, admin flag and API tokens.

Every route asks the API (``/api/users``, ``/api/users/{id}``, ``/api/users/{id}/tokens``) and
renders its answer; a member opening them gets the API's 403 (audited). Granting or revoking admin
rights and revoking a token go through a confirmation page first; what the API refuses (revoking
your own admin rights is a 409) is shown in place on the user's page.
"""

from __future__ import annotations

from typing import Final

from aws_lambda_powertools.event_handler import Response

from insightmesh.console.api import ApiFailure
from insightmesh.console.app import PAGE_SIZE, ConsoleResolver, Session, redirect

ADMIN_ACTIONS: Final = {"grant": True, "revoke": False}


def register(app: ConsoleResolver) -> None:
    """Add the Users routes to ``app``."""

    @app.get("/console/users")
    def _users() -> Response[str]:
        session = app.session()
        if session is None:
            return app.sign_in_page(status=401)
        search = (app.query("q") or "").strip()
        cursor = app.query("cursor") or ""
        query = {"limit": str(PAGE_SIZE), "cursor": cursor, "email_prefix": search}
        answer = app.call("GET", "/api/users", query=query)
        if answer.status in (401, 403):
            return app.failure(answer.error, session=session)
        # Anything else the API refuses (a prefix too long, a stale cursor: 422) is shown in place.
        found, next_cursor, error = (answer.body["items"], answer.body.get("next_cursor"), None) if answer.ok \
            else ([], None, answer.error)
        return app.page("users.html", session=session, users=found, next_cursor=next_cursor, request_cursor=cursor,
                        search=search, error=error)

    def user_page(session: Session, user_id: str, *, error: ApiFailure | None = None) -> Response[str]:
        user = app.call("GET", f"/api/users/{user_id}")
        if not user.ok:
            return app.failure(user.error, session=session)
        tokens = app.call("GET", f"/api/users/{user_id}/tokens")
        if not tokens.ok:
            return app.failure(tokens.error, session=session)
        return app.page("user.html", session=session, user=user.body, tokens=tokens.body["items"], error=error)

    @app.get("/console/users/<user_id>")
    def _user(user_id: str) -> Response[str]:
        session = app.session()
        return user_page(session, user_id) if session else app.sign_in_page(status=401)

    def change(user_id: str, method: str, path: str, body: object, notice: str) -> Response[str]:
        session = app.session()
        if session is None:
            return app.sign_in_page(status=401)
        answer = app.call(method, path, body=body, csrf_token=app.form().get("csrf_token", ""))
        if answer.ok:
            return redirect(f"/console/users/{user_id}?notice={notice}")
        if answer.status in (401, 403):
            return app.failure(answer.error, session=session)
        return user_page(session, user_id, error=answer.error)

    def no_such_action(session: Session) -> Response[str]:
        return app.failure(ApiFailure(404, "not_found", "There is no such change of admin rights."), session=session)

    @app.get("/console/users/<user_id>/admin/<action>")
    def _confirm_admin(user_id: str, action: str) -> Response[str]:
        session = app.session()
        if session is None:
            return app.sign_in_page(status=401)
        if action not in ADMIN_ACTIONS:
            return no_such_action(session)
        user = app.call("GET", f"/api/users/{user_id}")
        if not user.ok:
            return app.failure(user.error, session=session)
        who = user.body.get("email") or user_id
        if ADMIN_ACTIONS[action]:
            title, question, button = ("Grant admin rights", f"Make {who} an admin? Admins may change every agent, "
                                       "group, user, job and credential.", "Grant admin rights")
        else:
            title, question, button = ("Revoke admin rights", f"Revoke the admin rights of {who}? They keep their "
                                       "access as a member.", "Revoke admin rights")
        return app.page("confirm.html", session=session, title=title, question=question,
                        action=f"/console/users/{user_id}/admin/{action}", button=button,
                        cancel=f"/console/users/{user_id}")

    @app.post("/console/users/<user_id>/admin/<action>")
    def _set_admin(user_id: str, action: str) -> Response[str]:
        if action not in ADMIN_ACTIONS:
            session = app.session()
            return no_such_action(session) if session else app.sign_in_page(status=401)
        granted = ADMIN_ACTIONS[action]
        return change(user_id, "POST", f"/api/users/{user_id}/admin", {"is_admin": granted},
                      "admin-granted" if granted else "admin-revoked")

    @app.get("/console/users/<user_id>/tokens/<token_id>/revoke")
    def _confirm_revoke(user_id: str, token_id: str) -> Response[str]:
        session = app.session()
        if session is None:
            return app.sign_in_page(status=401)
        tokens = app.call("GET", f"/api/users/{user_id}/tokens")
        if not tokens.ok:
            return app.failure(tokens.error, session=session)
        token = next((item for item in tokens.body["items"] if item["token_id"] == token_id), None)
        if token is None:
            return app.failure(ApiFailure(404, "not_found", f"The user has no token {token_id}."), session=session)
        return app.page("confirm.html", session=session, title="Revoke a user's API token",
                        question=f"Revoke the token “{token['name']}” ({token_id}) of this user? Scripts that use it "
                                 "stop working at once; this cannot be undone.",
                        action=f"/console/users/{user_id}/tokens/{token_id}/revoke", button="Revoke token",
                        cancel=f"/console/users/{user_id}")

    @app.post("/console/users/<user_id>/tokens/<token_id>/revoke")
    def _revoke(user_id: str, token_id: str) -> Response[str]:
        return change(user_id, "DELETE", f"/api/users/{user_id}/tokens/{token_id}", None, "user-token-revoked")


__all__ = ["register"]
