"""The console's pages: sign-in, My access (every user) and Groups (admins), see ``app``.

Each route asks the API and renders what it answers. A page of another user's rights is never
decided here: an admin page opened by a member is refused by the API (403, audited) and shown as
the 403 page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import Response
from pydantic import ValidationError

from insightmesh.console import assets
from insightmesh.console.api import ApiFailure
from insightmesh.console.app import (
    HOME,
    PAGE_SIZE,
    ConsoleResolver,
    DescriptionForm,
    GroupForm,
    LoginForm,
    MemberForm,
    Session,
    _Form,
    redirect,
)


def register(app: ConsoleResolver) -> None:
    """Add the console's routes to ``app``."""

    # -- entry, static files, signing in and out ----------------------------------------------------

    @app.get("/")
    def _root() -> Response[str]:
        return redirect(HOME)

    @app.get("/console/static/<name>")
    def _static(name: str) -> Response[str]:
        asset = assets.by_fingerprinted_name(name)
        if asset is None:
            return app.page("message.html", status=404, title="Not found", message="No such file.")
        return Response(status_code=200, content_type=asset.content_type, body=asset.body)

    @app.get("/console/login")
    def _login_link() -> Response[str]:
        token = app.query("token") or ""
        answer = app.call("GET", "/auth/login-link", query={"token": token})
        if not answer.ok:
            return link_refused(answer.error)
        return app.page("login_link.html", email=answer.body.get("email"), token=token,
                        expires_at=answer.body.get("expires_at"))

    @app.post("/console/login")
    def _spend_login_link() -> Response[str]:
        try:
            form = LoginForm.model_validate(app.form())
        except ValidationError:
            return link_refused(ApiFailure(400, "invalid_login_link", "this sign-in link is not valid"))
        answer = app.call("POST", "/auth/login-link", body={"token": form.token})
        if not answer.ok:
            return link_refused(answer.error)
        return redirect(HOME, cookies=answer.set_cookies)

    def link_refused(failure: ApiFailure) -> Response[str]:
        if failure.status == 429:
            return app.failure(failure)
        return app.page("message.html", status=failure.status, title="This sign-in link cannot be used",
                        message=failure.message, request_id=failure.request_id,
                        hint="Ask an operator for a new link:",
                        command="insightmesh login-link --email you@example.com")

    @app.post("/console/logout")
    def _logout() -> Response[str]:
        form = app.form()
        answer = app.call("POST", "/auth/logout", csrf_token=form.get("csrf_token"))
        return redirect(HOME, cookies=answer.set_cookies)

    # -- My access ----------------------------------------------------------------------------------

    @app.get("/console")
    @app.get("/console/")  # the home is /console; /console/ is kept for old links and local use
    def _home() -> Response[str]:
        session = app.session()
        if session is None:
            return app.sign_in_page()
        me = app.call("GET", "/api/me")
        if not me.ok:
            return app.failure(me.error, session=session)
        tokens = app.call("GET", "/api/me/tokens")
        if not tokens.ok:
            return app.failure(tokens.error, session=session)
        return app.page("me.html", session=session, me=me.body, tokens=tokens.body["items"])

    @app.get("/console/tokens/<token_id>/revoke")
    def _confirm_revoke(token_id: str) -> Response[str]:
        session = app.signed_in()
        tokens = app.call("GET", "/api/me/tokens")
        if not tokens.ok:
            return app.failure(tokens.error, session=session)
        token = next((item for item in tokens.body["items"] if item["token_id"] == token_id), None)
        if token is None:
            return app.failure(ApiFailure(404, "not_found", "You have no such token."), session=session)
        return app.page("confirm.html", session=session, title="Revoke an API token",
                        question=f"Revoke the token “{token['name']}” ({token_id})? Scripts that use it stop "
                                 "working at once; this cannot be undone.",
                        action=f"/console/tokens/{token_id}/revoke", button="Revoke token", cancel=HOME)

    @app.post("/console/tokens/<token_id>/revoke")
    def _revoke(token_id: str) -> Response[str]:
        form = app.form()
        answer = app.call("DELETE", f"/api/me/tokens/{token_id}", csrf_token=form.get("csrf_token"))
        if not answer.ok:
            return app.failure(answer.error, session=app.session())
        return redirect(f"{HOME}?notice=token-revoked")

    # -- Groups (admins; the API decides) ----------------------------------------------------------

    # A form the API refused is shown again with its error, in place, as a 200 page: the browser
    # shows the form rather than an error document (and logs no failed load).
    def groups_page(session: Session, *, error: ApiFailure | None = None,
                    values: dict[str, str] | None = None) -> Response[str]:
        cursor = app.query("cursor") or ""
        answer = app.call("GET", "/api/groups", query={"limit": str(PAGE_SIZE), "cursor": cursor})
        if not answer.ok:
            return app.failure(answer.error, session=session)
        return app.page("groups.html", session=session, groups=answer.body["items"],
                        next_cursor=answer.body.get("next_cursor"), request_cursor=cursor, error=error,
                        values=values or {})

    @app.get("/console/groups")
    def _groups() -> Response[str]:
        return groups_page(app.signed_in())

    @app.post("/console/groups")
    def _create_group() -> Response[str]:
        name = app.form().get("name", "").strip()
        return app.post_back("POST", "/api/groups", model=GroupForm,
                             done=f"/console/groups/{name}?notice=group-created",
                             body=lambda form: {"name": form.name, "description": form.description},
                             redisplay=lambda session, error, raw: groups_page(session, error=error, values=raw))

    def group_page(session: Session, name: str, *, error: ApiFailure | None = None,
                   values: dict[str, str] | None = None) -> Response[str]:
        group = app.fetch(f"/api/groups/{name}", session=session)
        cursor = app.query("cursor") or ""
        members = app.fetch(f"/api/groups/{name}/members", session=session,
                            query={"limit": str(PAGE_SIZE), "cursor": cursor})
        search = (app.query("q") or "").strip()
        found, search_error = app.search("/api/users", {"email_prefix": search, "limit": "10"}) if search \
            else ([], None)
        return app.page("group.html", session=session, group=group,
                        members=members["items"], next_cursor=members.get("next_cursor"),
                        request_cursor=cursor, search=search, found=found, search_error=search_error, error=error,
                        values=values or {})

    @app.get("/console/groups/<name>")
    def _group(name: str) -> Response[str]:
        return group_page(app.signed_in(), name)

    def change(name: str, method: str, path: str, notice: str, *, model: type[_Form] = _Form,
               body: Callable[[Any], Any] = lambda _: None, done: str | None = None) -> Response[str]:
        """A change to group ``name``; a refusal is shown on the group page (a 404 — the group is gone — is a page)."""
        return app.post_back(method, path, model=model, body=body, as_page=(401, 403, 404),
                             done=f"{done or f'/console/groups/{name}'}?notice={notice}",
                             redisplay=lambda session, error, raw: group_page(session, name, error=error, values=raw))

    @app.post("/console/groups/<name>")
    def _update_group(name: str) -> Response[str]:
        return change(name, "PATCH", f"/api/groups/{name}", "group-updated", model=DescriptionForm,
                      body=lambda form: {"description": form.description})

    @app.get("/console/groups/<name>/delete")
    def _confirm_delete(name: str) -> Response[str]:
        session = app.signed_in()
        app.fetch(f"/api/groups/{name}", session=session)  # a 404 page for a group that is gone
        return app.page("confirm.html", session=session, title="Delete a group",
                        question=f"Delete the group “{name}”? Only an empty group without grants can be deleted.",
                        action=f"/console/groups/{name}/delete", button="Delete group",
                        cancel=f"/console/groups/{name}")

    @app.post("/console/groups/<name>/delete")
    def _delete_group(name: str) -> Response[str]:
        return change(name, "DELETE", f"/api/groups/{name}", "group-deleted", done="/console/groups")

    @app.post("/console/groups/<name>/members")
    def _add_member(name: str) -> Response[str]:
        return change(name, "POST", f"/api/groups/{name}/members", "member-added", model=MemberForm,
                      body=lambda form: {"user_id": form.user_id})

    @app.get("/console/groups/<name>/members/<user_id>/remove")
    def _confirm_remove(name: str, user_id: str) -> Response[str]:
        session = app.signed_in()
        app.fetch(f"/api/groups/{name}", session=session)  # a 404 page for a group that is gone
        who = app.fetch(f"/api/users/{user_id}", session=session).get("email") or user_id
        return app.page("confirm.html", session=session, title="Remove a member",
                        question=f"Remove {who} from the group “{name}”?",
                        action=f"/console/groups/{name}/members/{user_id}/remove", button="Remove member",
                        cancel=f"/console/groups/{name}")

    @app.post("/console/groups/<name>/members/<user_id>/remove")
    def _remove_member(name: str, user_id: str) -> Response[str]:
        return change(name, "DELETE", f"/api/groups/{name}/members/{user_id}", "member-removed")


__all__ = ["register"]
