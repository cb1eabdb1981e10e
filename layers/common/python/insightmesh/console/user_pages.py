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
from insightmesh.console.app import PAGE_SIZE, ConsoleResolver, PageInstead, Session

ADMIN_ACTIONS: Final = {"grant": True, "revoke": False}


def register(app: ConsoleResolver) -> None:
    """Add the Users routes to ``app``."""

    @app.get("/console/users")
    def _users() -> Response[str]:
        session = app.signed_in()
        search = (app.query("q") or "").strip()
        cursor = app.query("cursor") or ""
        answer = app.call("GET", "/api/users", query={"limit": str(PAGE_SIZE), "cursor": cursor,
                                                      "email_prefix": search})
        if answer.status in (401, 403):
            return app.failure(answer.error, session=session)
        # Anything else the API refuses (a prefix too long, a cursor of another search: 422) is shown in place.
        found, next_cursor, error = (answer.body["items"], answer.body.get("next_cursor"), None) if answer.ok \
            else ([], None, answer.error)
        return app.page("users.html", session=session, users=found, next_cursor=next_cursor, request_cursor=cursor,
                        search=search, error=error)

    def user_page(session: Session, user_id: str, error: ApiFailure | None = None) -> Response[str]:
        user = app.fetch(f"/api/users/{user_id}", session=session)
        tokens = app.fetch(f"/api/users/{user_id}/tokens", session=session)
        return app.page("user.html", session=session, user=user, tokens=tokens["items"], error=error)

    @app.get("/console/users/<user_id>")
    def _user(user_id: str) -> Response[str]:
        return user_page(app.signed_in(), user_id)

    def admin_change(session: Session, action: str) -> bool:
        """Whether ``action`` grants (``True``) or revokes admin rights; else (raised) a 404 page."""
        if action not in ADMIN_ACTIONS:
            raise PageInstead(app.failure(ApiFailure(404, "not_found", "There is no such change of admin rights."),
                                          session=session))
        return ADMIN_ACTIONS[action]

    @app.get("/console/users/<user_id>/admin/<action>")
    def _confirm_admin(user_id: str, action: str) -> Response[str]:
        session = app.signed_in()
        granted = admin_change(session, action)
        user = app.fetch(f"/api/users/{user_id}", session=session)
        who = user.get("email") or user_id
        if granted:
            title, question = "Grant admin rights", (f"Make {who} an admin? Admins may change every agent, group, "
                                                     "user, job and credential.")
        else:
            title, question = "Revoke admin rights", f"Revoke the admin rights of {who}? They keep a member's access."
        return app.page("confirm.html", session=session, title=title, question=question,
                        action=f"/console/users/{user_id}/admin/{action}", button=title,
                        cancel=f"/console/users/{user_id}")

    @app.post("/console/users/<user_id>/admin/<action>")
    def _set_admin(user_id: str, action: str) -> Response[str]:
        granted = admin_change(app.signed_in(), action)
        return app.post_back("POST", f"/api/users/{user_id}/admin", body=lambda _: {"is_admin": granted},
                             done=f"/console/users/{user_id}?notice={'admin-granted' if granted else 'admin-revoked'}",
                             redisplay=lambda session, error, _: user_page(session, user_id, error))

    @app.get("/console/users/<user_id>/tokens/<token_id>/revoke")
    def _confirm_revoke(user_id: str, token_id: str) -> Response[str]:
        session = app.signed_in()
        tokens = app.fetch(f"/api/users/{user_id}/tokens", session=session)
        token = next((item for item in tokens["items"] if item["token_id"] == token_id), None)
        if token is None:
            return app.failure(ApiFailure(404, "not_found", f"The user has no token {token_id}."), session=session)
        return app.page("confirm.html", session=session, title="Revoke a user's API token",
                        question=f"Revoke the token “{token['name']}” ({token_id}) of this user? Scripts that use it "
                                 "stop working at once; this cannot be undone.",
                        action=f"/console/users/{user_id}/tokens/{token_id}/revoke", button="Revoke token",
                        cancel=f"/console/users/{user_id}")

    @app.post("/console/users/<user_id>/tokens/<token_id>/revoke")
    def _revoke(user_id: str, token_id: str) -> Response[str]:
        return app.post_back("DELETE", f"/api/users/{user_id}/tokens/{token_id}",
                             done=f"/console/users/{user_id}?notice=user-token-revoked",
                             redisplay=lambda session, error, _: user_page(session, user_id, error))


__all__ = ["register"]
