"""The console's pages: sign-in, My access (every user) and Groups (admins), see ``app``.

Each route asks the API and renders what it answers. A page of another user's rights is never
decided here: an admin page opened by a member is refused by the API (403, audited) and shown as
the 403 page.
"""

from __future__ import annotations

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
    invalid,
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
        session = app.session()
        if session is None:
            return app.sign_in_page(status=401)
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
        answer = app.call("GET", "/api/groups", query={"limit": str(PAGE_SIZE), "cursor": app.query("cursor") or ""})
        if not answer.ok:
            return app.failure(answer.error, session=session)
        return app.page("groups.html", session=session, groups=answer.body["items"],
                        next_cursor=answer.body.get("next_cursor"), error=error, values=values or {})

    @app.get("/console/groups")
    def _groups() -> Response[str]:
        session = app.session()
        return groups_page(session) if session else app.sign_in_page(status=401)

    @app.post("/console/groups")
    def _create_group() -> Response[str]:
        session = app.session()
        if session is None:
            return app.sign_in_page(status=401)
        raw = app.form()
        try:
            form = GroupForm.model_validate(raw)
        except ValidationError as error:
            return groups_page(session, error=invalid(error), values=raw)
        answer = app.call("POST", "/api/groups", body={"name": form.name, "description": form.description},
                          csrf_token=form.csrf_token)
        if not answer.ok:
            if answer.status in (401, 403):
                return app.failure(answer.error, session=session)
            return groups_page(session, error=answer.error, values=raw)
        return redirect(f"/console/groups/{form.name}?notice=group-created")

    def group_page(session: Session, name: str, *, error: ApiFailure | None = None,
                   values: dict[str, str] | None = None) -> Response[str]:
        group = app.call("GET", f"/api/groups/{name}")
        if not group.ok:
            return app.failure(group.error, session=session)
        members = app.call("GET", f"/api/groups/{name}/members",
                           query={"limit": str(PAGE_SIZE), "cursor": app.query("cursor") or ""})
        if not members.ok:
            return app.failure(members.error, session=session)
        search = (app.query("q") or "").strip()
        found: list[Any] = []
        search_error = None
        if search:
            users = app.call("GET", "/api/users", query={"email_prefix": search, "limit": "10"})
            found, search_error = (users.body["items"], None) if users.ok else ([], users.error)
        return app.page("group.html", session=session, group=group.body,
                        members=members.body["items"], next_cursor=members.body.get("next_cursor"),
                        search=search, found=found, search_error=search_error, error=error, values=values or {})

    @app.get("/console/groups/<name>")
    def _group(name: str) -> Response[str]:
        session = app.session()
        return group_page(session, name) if session else app.sign_in_page(status=401)

    def change(name: str, method: str, path: str, body: Any, csrf_token: str, notice: str,
               raw: dict[str, str], done: str | None = None) -> Response[str]:
        session = app.session()
        if session is None:
            return app.sign_in_page(status=401)
        answer = app.call(method, path, body=body, csrf_token=csrf_token)
        if answer.ok:
            return redirect(f"{done or f'/console/groups/{name}'}?notice={notice}")
        if answer.status in (401, 403, 404):
            return app.failure(answer.error, session=session)
        return group_page(session, name, error=answer.error, values=raw)

    @app.post("/console/groups/<name>")
    def _update_group(name: str) -> Response[str]:
        raw = app.form()
        try:
            form = DescriptionForm.model_validate(raw)
        except ValidationError as error:
            session = app.session()
            return group_page(session, name, error=invalid(error), values=raw) if session \
                else app.sign_in_page(status=401)
        return change(name, "PATCH", f"/api/groups/{name}", {"description": form.description}, form.csrf_token,
                      "group-updated", raw)

    @app.get("/console/groups/<name>/delete")
    def _confirm_delete(name: str) -> Response[str]:
        session = app.session()
        if session is None:
            return app.sign_in_page(status=401)
        group = app.call("GET", f"/api/groups/{name}")
        if not group.ok:
            return app.failure(group.error, session=session)
        return app.page("confirm.html", session=session, title="Delete a group",
                        question=f"Delete the group “{name}”? Only an empty group without grants can be deleted.",
                        action=f"/console/groups/{name}/delete", button="Delete group",
                        cancel=f"/console/groups/{name}")

    @app.post("/console/groups/<name>/delete")
    def _delete_group(name: str) -> Response[str]:
        raw = app.form()
        return change(name, "DELETE", f"/api/groups/{name}", None, raw.get("csrf_token", ""), "group-deleted", raw,
                      done="/console/groups")

    @app.post("/console/groups/<name>/members")
    def _add_member(name: str) -> Response[str]:
        raw = app.form()
        try:
            form = MemberForm.model_validate(raw)
        except ValidationError as error:
            session = app.session()
            return group_page(session, name, error=invalid(error), values=raw) if session \
                else app.sign_in_page(status=401)
        return change(name, "POST", f"/api/groups/{name}/members", {"user_id": form.user_id}, form.csrf_token,
                      "member-added", raw)

    @app.get("/console/groups/<name>/members/<user_id>/remove")
    def _confirm_remove(name: str, user_id: str) -> Response[str]:
        session = app.session()
        if session is None:
            return app.sign_in_page(status=401)
        group = app.call("GET", f"/api/groups/{name}")
        if not group.ok:
            return app.failure(group.error, session=session)
        user = app.call("GET", f"/api/users/{user_id}")
        if not user.ok:
            return app.failure(user.error, session=session)
        who = user.body.get("email") or user_id
        return app.page("confirm.html", session=session, title="Remove a member",
                        question=f"Remove {who} from the group “{name}”?",
                        action=f"/console/groups/{name}/members/{user_id}/remove", button="Remove member",
                        cancel=f"/console/groups/{name}")

    @app.post("/console/groups/<name>/members/<user_id>/remove")
    def _remove_member(name: str, user_id: str) -> Response[str]:
        raw = app.form()
        return change(name, "DELETE", f"/api/groups/{name}/members/{user_id}", None, raw.get("csrf_token", ""),
                      "member-removed", raw)


__all__ = ["register"]
