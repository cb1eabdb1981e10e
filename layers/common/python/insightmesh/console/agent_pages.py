"""The console's Agents pages (admins): the list, one agent's settings and state, and its grants.

As everywhere in the console, each route asks the API and renders its answer; what the API
refuses (a 409 for a concurrent change, an alias taken, a grant that would change nothing; a 422)
is shown in place, next to the form that was sent, with the form's values kept. Deleting an agent
and removing a grant go through a confirmation page first. The group to grant is typed, or picked
from a search by the start of its name (so it works with any number of groups); grants to people
show their e-mail, which the API resolves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from aws_lambda_powertools.event_handler import Response
from pydantic import Field

from insightmesh.console.api import ApiFailure
from insightmesh.console.app import PAGE_SIZE, ConsoleResolver, Session, _Form

Section = Literal["settings", "state", "grant"]
# The grants a page shows: the first page is the agent detail's (the API's DETAIL_GRANTS), so the others match it.
GRANTS_PAGE = 100
GROUP_CHOICES = 10  # the groups offered for a searched name prefix (GET /api/groups?name_prefix=)


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

    @app.get("/console/agents")
    def _agents() -> Response[str]:
        # admin=True: GET /api/agents answers a member too (the agents they may use)
        session = app.signed_in(admin=True)
        cursor = app.query("cursor") or ""
        answer = app.call("GET", "/api/agents", query={"limit": str(PAGE_SIZE), "cursor": cursor,
                                                       "include_deleted": "true"})
        if not answer.ok:
            return app.failure(answer.error, session=session)
        return app.page("agents.html", session=session, agents=answer.body["items"],
                        next_cursor=answer.body.get("next_cursor"), request_cursor=cursor)

    def agent_page(session: Session, name: str, *, error: ApiFailure | None = None, section: Section | None = None,
                   values: dict[str, str] | None = None) -> Response[str]:
        agent = app.fetch(f"/api/agents/{name}", session=session)
        cursor = app.query("cursor") or ""
        if cursor:
            page = app.fetch(f"/api/agents/{name}/grants", session=session,
                             query={"limit": str(GRANTS_PAGE), "cursor": cursor})
            grants, next_cursor = page["items"], page.get("next_cursor")
        else:  # the agent's detail carries its first page of grants: one API call (and its guard) less
            grants, next_cursor = agent["grants"], agent.get("grants_next_cursor")
        # The group picker: the groups whose name starts with what was searched (any number of groups).
        group_search = (app.query("group_q") or "").strip()
        found, search_error = app.search("/api/groups", {"name_prefix": group_search, "limit": str(GROUP_CHOICES)}) \
            if group_search else ([], None)
        kept = dict(values or {})
        if section == "settings" and kept.get("version") != str(agent["version"]):
            kept = {}  # changed meanwhile: show what is stored now, with its version
        chosen = kept.get("group", "") if kept.get("kind") == "group" else (app.query("group") or "")
        return app.page("agent.html", session=session, agent=agent, grants=grants, next_cursor=next_cursor,
                        request_cursor=cursor, group_search=group_search, found_groups=found,
                        search_error=search_error, chosen_group=chosen, error=error, section=section, values=kept)

    @app.get("/console/agents/<name>")
    def _agent(name: str) -> Response[str]:
        return agent_page(app.signed_in(admin=True), name)

    def change(name: str, method: str, path: str, notice: str, section: Section, *, model: type[_Form] = _Form,
               body: Callable[[Any], Any] = lambda _: None) -> Response[str]:
        """A change to agent ``name``; a refusal is shown next to the form of ``section`` (a 404 there —
        no such group or person — too)."""
        return app.post_back(method, path, model=model, body=body, admin=True,
                             done=f"/console/agents/{name}?notice={notice}",
                             as_page=(401, 403) if section == "grant" else (401, 403, 404),
                             redisplay=lambda session, error, raw: agent_page(session, name, error=error,
                                                                              section=section, values=raw))

    @app.post("/console/agents/<name>")
    def _update_agent(name: str) -> Response[str]:
        return change(name, "PATCH", f"/api/agents/{name}", "agent-updated", "settings", model=AgentForm,
                      body=lambda form: {"version": form.version, "display_name": form.display_name,
                                         "description": form.description, "aliases": aliases(form.aliases),
                                         "visibility": form.visibility})

    def state_route(action: str, notice: str) -> None:
        def _state(name: str) -> Response[str]:
            return change(name, "POST", f"/api/agents/{name}/{action}", notice, "state")

        app.post(f"/console/agents/<name>/{action}")(_state)

    for action, notice in (("enable", "agent-enabled"), ("disable", "agent-disabled"), ("restore", "agent-restored")):
        state_route(action, notice)

    @app.get("/console/agents/<name>/delete")
    def _confirm_delete(name: str) -> Response[str]:
        session = app.signed_in(admin=True)
        app.fetch(f"/api/agents/{name}", session=session)  # a 404 page for an agent that is not there
        return app.page("confirm.html", session=session, title="Delete an agent",
                        question=f"Delete the agent “{name}”? Nobody can use it until it is restored; its grants "
                                 "and aliases are kept.",
                        action=f"/console/agents/{name}/delete", button="Delete agent",
                        cancel=f"/console/agents/{name}")

    @app.post("/console/agents/<name>/delete")
    def _delete_agent(name: str) -> Response[str]:
        return change(name, "DELETE", f"/api/agents/{name}", "agent-deleted", "state")

    @app.post("/console/agents/<name>/grants")
    def _add_grant(name: str) -> Response[str]:
        return change(name, "POST", f"/api/agents/{name}/grants", "grant-added", "grant", model=GrantForm,
                      body=grant_body)

    @app.get("/console/agents/<name>/grants/<kind>/<principal_id>/remove")
    def _confirm_remove(name: str, kind: str, principal_id: str) -> Response[str]:
        session = app.signed_in(admin=True)
        # The one grant, wherever it stands among the agent's grants, with the person's e-mail.
        grant = app.fetch(f"/api/agents/{name}/grants/{kind}:{principal_id}", session=session)
        who = grant.get("email") or principal_id
        return app.page("confirm.html", session=session, title="Remove a grant",
                        question=f"Remove the {grant['effect']} grant of {kind} “{who}” on the agent “{name}”?",
                        action=f"/console/agents/{name}/grants/{kind}/{principal_id}/remove", button="Remove grant",
                        cancel=f"/console/agents/{name}")

    @app.post("/console/agents/<name>/grants/<kind>/<principal_id>/remove")
    def _remove_grant(name: str, kind: str, principal_id: str) -> Response[str]:
        return change(name, "DELETE", f"/api/agents/{name}/grants/{kind}:{principal_id}", "grant-removed", "grant")


__all__ = ["register"]
