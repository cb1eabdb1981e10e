"""The console's Agents pages (admins): the list, one agent's settings and state, and its grants.

As everywhere in the console, each route asks the API and renders its answer; what the API
refuses (a 409 for a concurrent change, an alias taken, a grant that would change nothing; a 422)
is shown in place, next to the form that was sent, with the form's values kept. Deleting an agent
and removing a grant go through a confirmation page first.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from aws_lambda_powertools.event_handler import Response
from pydantic import Field, ValidationError

from insightmesh.console.api import ApiFailure
from insightmesh.console.app import PAGE_SIZE, ConsoleResolver, Session, _Form, invalid, redirect

Section = Literal["settings", "state", "grant"]
GROUP_CHOICES = 100  # the groups offered in the grant form (one page of GET /api/groups)


class AgentForm(_Form):
    version: int = Field(ge=1)
    display_name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=2000)
    aliases: str = Field(default="", max_length=2000)
    visibility: Literal["public", "admins", "restricted"]


class GrantForm(_Form):
    kind: Literal["group", "user"]
    group: str = Field(default="", max_length=128)
    email: str = Field(default="", max_length=320)
    effect: Literal["allow", "deny"] = "allow"
    expires_at: str = Field(default="", max_length=40)


def aliases(text: str) -> list[str]:
    """``"coach, deals"`` → ``["coach", "deals"]`` (commas or spaces separate them)."""
    return [alias for alias in re.split(r"[,\s]+", text) if alias]


def grant_body(form: GrantForm) -> dict[str, Any]:
    body: dict[str, Any] = {"effect": form.effect}
    if form.kind == "group":
        body.update(principal_type="group", principal_id=form.group)
    else:
        body["email"] = form.email
    if form.expires_at:
        body["expires_at"] = form.expires_at
    return body


def register(app: ConsoleResolver) -> None:
    """Add the Agents routes to ``app``."""

    def admin_session() -> Session | Response[str]:
        session = app.session()
        if session is None:
            return app.sign_in_page(status=401)
        if not session.is_admin:  # GET /api/agents answers a member too (the agents they may use)
            return app.failure(ApiFailure(403, "forbidden", "This page requires an admin."), session=session)
        return session

    @app.get("/console/agents")
    def _agents() -> Response[str]:
        session = admin_session()
        if not isinstance(session, Session):
            return session
        cursor = app.query("cursor") or ""
        answer = app.call("GET", "/api/agents", query={"limit": str(PAGE_SIZE), "cursor": cursor,
                                                       "include_deleted": "true"})
        if not answer.ok:
            return app.failure(answer.error, session=session)
        return app.page("agents.html", session=session, agents=answer.body["items"],
                        next_cursor=answer.body.get("next_cursor"), request_cursor=cursor)

    def agent_page(session: Session, name: str, *, error: ApiFailure | None = None, section: Section | None = None,
                   values: dict[str, str] | None = None) -> Response[str]:
        agent = app.call("GET", f"/api/agents/{name}")
        if not agent.ok:
            return app.failure(agent.error, session=session)
        cursor = app.query("cursor") or ""
        grants = app.call("GET", f"/api/agents/{name}/grants", query={"limit": str(PAGE_SIZE), "cursor": cursor})
        if not grants.ok:
            return app.failure(grants.error, session=session)
        groups = app.call("GET", "/api/groups", query={"limit": str(GROUP_CHOICES)})
        if not groups.ok:
            return app.failure(groups.error, session=session)
        kept = dict(values or {})
        if section == "settings" and kept.get("version") != str(agent.body["version"]):
            kept = {}  # changed meanwhile: show what is stored now, with its version
        return app.page("agent.html", session=session, agent=agent.body, grants=grants.body["items"],
                        next_cursor=grants.body.get("next_cursor"), request_cursor=cursor,
                        groups=groups.body["items"], error=error, section=section, values=kept)

    @app.get("/console/agents/<name>")
    def _agent(name: str) -> Response[str]:
        session = admin_session()
        return agent_page(session, name) if isinstance(session, Session) else session

    def change(name: str, method: str, path: str, body: Any, csrf_token: str, notice: str, section: Section,
               raw: dict[str, str], done: str | None = None) -> Response[str]:
        session = admin_session()
        if not isinstance(session, Session):
            return session
        answer = app.call(method, path, body=body, csrf_token=csrf_token)
        if answer.ok:
            return redirect(f"{done or f'/console/agents/{name}'}?notice={notice}")
        if answer.status in (401, 403) or (answer.status == 404 and section != "grant"):
            return app.failure(answer.error, session=session)
        return agent_page(session, name, error=answer.error, section=section, values=raw)

    def refused(name: str, error: ValidationError, section: Section, raw: dict[str, str]) -> Response[str]:
        session = admin_session()
        if not isinstance(session, Session):
            return session
        return agent_page(session, name, error=invalid(error), section=section, values=raw)

    @app.post("/console/agents/<name>")
    def _update_agent(name: str) -> Response[str]:
        raw = app.form()
        try:
            form = AgentForm.model_validate(raw)
        except ValidationError as error:
            return refused(name, error, "settings", raw)
        body = {"version": form.version, "display_name": form.display_name, "description": form.description,
                "aliases": aliases(form.aliases), "visibility": form.visibility}
        return change(name, "PATCH", f"/api/agents/{name}", body, form.csrf_token, "agent-updated", "settings", raw)

    def state_route(action: str, notice: str) -> None:
        def _state(name: str) -> Response[str]:
            raw = app.form()
            return change(name, "POST", f"/api/agents/{name}/{action}", None, raw.get("csrf_token", ""), notice,
                          "state", raw)

        app.post(f"/console/agents/<name>/{action}")(_state)

    for action, notice in (("enable", "agent-enabled"), ("disable", "agent-disabled"), ("restore", "agent-restored")):
        state_route(action, notice)

    @app.get("/console/agents/<name>/delete")
    def _confirm_delete(name: str) -> Response[str]:
        session = admin_session()
        if not isinstance(session, Session):
            return session
        agent = app.call("GET", f"/api/agents/{name}")
        if not agent.ok:
            return app.failure(agent.error, session=session)
        return app.page("confirm.html", session=session, title="Delete an agent",
                        question=f"Delete the agent “{name}”? Nobody can use it until it is restored; its grants "
                                 "and aliases are kept.",
                        action=f"/console/agents/{name}/delete", button="Delete agent",
                        cancel=f"/console/agents/{name}")

    @app.post("/console/agents/<name>/delete")
    def _delete_agent(name: str) -> Response[str]:
        raw = app.form()
        return change(name, "DELETE", f"/api/agents/{name}", None, raw.get("csrf_token", ""), "agent-deleted",
                      "state", raw)

    @app.post("/console/agents/<name>/grants")
    def _add_grant(name: str) -> Response[str]:
        raw = app.form()
        try:
            form = GrantForm.model_validate(raw)
        except ValidationError as error:
            return refused(name, error, "grant", raw)
        return change(name, "POST", f"/api/agents/{name}/grants", grant_body(form), form.csrf_token, "grant-added",
                      "grant", raw)

    @app.get("/console/agents/<name>/grants/<kind>/<principal_id>/remove")
    def _confirm_remove(name: str, kind: str, principal_id: str) -> Response[str]:
        session = admin_session()
        if not isinstance(session, Session):
            return session
        grants = app.call("GET", f"/api/agents/{name}/grants", query={"limit": "100"})
        if not grants.ok:
            return app.failure(grants.error, session=session)
        principal = f"{kind}:{principal_id}"
        grant = next((item for item in grants.body["items"] if item["principal"] == principal), None)
        if grant is None:
            return app.failure(ApiFailure(404, "not_found", f"The agent {name} has no grant for {principal}."),
                               session=session)
        return app.page("confirm.html", session=session, title="Remove a grant",
                        question=f"Remove the {grant['effect']} grant of {kind} “{principal_id}” on the agent "
                                 f"“{name}”?",
                        action=f"/console/agents/{name}/grants/{kind}/{principal_id}/remove", button="Remove grant",
                        cancel=f"/console/agents/{name}")

    @app.post("/console/agents/<name>/grants/<kind>/<principal_id>/remove")
    def _remove_grant(name: str, kind: str, principal_id: str) -> Response[str]:
        raw = app.form()
        return change(name, "DELETE", f"/api/agents/{name}/grants/{kind}:{principal_id}", None,
                      raw.get("csrf_token", ""), "grant-removed", "grant", raw)


__all__ = ["register"]
