"""``/api/channels``: per-channel settings (admins only; every change audited in the same transaction).

* ``GET /api/channels`` — the configured channels, a page at a time (one Query);
* ``GET /api/channels/<channel_id>`` — one channel's settings (the defaults when never set);
* ``PUT`` — replace them; ``PATCH`` — change some; ``DELETE`` — back to the defaults.

Agents named in ``default_agent`` or ``allowed_agents`` must exist in the catalog (a 422 names
the unknown ones), and when ``allowed_agents`` is set, the agent that answers un-addressed
messages (``default_agent``, else the assistant) must be one of them. Send back the ``version``
you read to make a change conditional on it (409 if the channel changed since). What the settings
do and where they are applied: :mod:`insightmesh.conversation.channel_settings`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from pydantic import BaseModel, ConfigDict, Field, field_validator

from insightmesh.admin.schemas import ToolName
from insightmesh.agents.catalog import list_agents
from insightmesh.agents.registry import DEFAULT_AGENT
from insightmesh.api.app import InsightMeshResolver
from insightmesh.api.control_plane import SECURITY, Cursor, Limit, responses
from insightmesh.api.errors import ConflictError, NotFoundError, ValidationFailedError
from insightmesh.api.pagination import DEFAULT_LIMIT, Page, key_cursor, query_page, start_key
from insightmesh.audit import log as audit_log
from insightmesh.audit.tx import Tx
from insightmesh.auth.guard import authenticate_admin
from insightmesh.auth.principal import Principal
from insightmesh.clock import utc_now
from insightmesh.conversation.channel_settings import (
    SETTINGS_PK,
    ChannelSettings,
    ChannelSettingsRecord,
    ReplyStyle,
    ResponseMode,
    forget,
    read,
)
from insightmesh.tools.registry import TOOLS

CHANNEL_ID_PATTERN: Final = r"^[CG][A-Z0-9]{2,30}$"
AGENT_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,39}$"
SOURCE_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,19}:\S{1,400}$"
MAX_AGENTS: Final = 50
MAX_SOURCES: Final = 50
TOOLS_DESCRIPTION: Final = ("Only these of the answering agent's tools run here ([]: none); null: the agent's tools. "
                            "Names: " + ", ".join(sorted(TOOLS)) + ".")
LIST_SCOPE: Final = "channels"

ChannelIdPath = Annotated[str, Path(pattern=CHANNEL_ID_PATTERN,
                                    description="The Slack channel id (public C…, private G… or C…).")]
AgentName = Annotated[str, Field(pattern=AGENT_PATTERN)]
SourceName = Annotated[str, Field(pattern=SOURCE_PATTERN, description="gdrive:<folder or file id>, local:<path>.")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unique(values: list[str] | None) -> list[str] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("each entry may appear only once")
    return values


class ChannelSettingsIn(_Request):
    """A channel's settings, whole (PUT): an absent field takes its default."""

    mode: ResponseMode = Field(default=ResponseMode.MENTIONS,
                               description="mentions (default), questions (every message ending in ?) or off "
                                           "(the bot answers nothing in the channel).")
    default_agent: AgentName | None = Field(default=None, description="Answers when a message names no agent.")
    allowed_agents: list[AgentName] | None = Field(default=None, min_length=1, max_length=MAX_AGENTS,
                                                   description="Only these agents answer here; null: any.")
    knowledge_sources: list[SourceName] | None = Field(default=None, min_length=1, max_length=MAX_SOURCES,
                                                       description="Retrieval here uses only these sources; "
                                                                   "null: all.")
    reply: ReplyStyle = Field(default=ReplyStyle.THREAD, description="thread (default) or ephemeral.")
    tools: list[ToolName] | None = Field(default=None, max_length=len(TOOLS), description=TOOLS_DESCRIPTION)
    version: int | None = Field(default=None, ge=1, description="The version you read: 409 if changed since.")

    _unique_agents = field_validator("allowed_agents", "knowledge_sources", "tools")(_unique)


class ChannelSettingsPatch(_Request):
    """Some of a channel's settings (PATCH): only the fields sent change; null clears a field."""

    mode: ResponseMode | None = None
    default_agent: AgentName | None = None
    allowed_agents: list[AgentName] | None = Field(default=None, min_length=1, max_length=MAX_AGENTS)
    knowledge_sources: list[SourceName] | None = Field(default=None, min_length=1, max_length=MAX_SOURCES)
    reply: ReplyStyle | None = None
    tools: list[ToolName] | None = Field(default=None, max_length=len(TOOLS), description=TOOLS_DESCRIPTION)
    version: int | None = Field(default=None, ge=1, description="The version you read: 409 if changed since.")

    _unique_agents = field_validator("allowed_agents", "knowledge_sources", "tools")(_unique)


class ChannelSettingsOut(BaseModel):
    channel_id: str
    mode: ResponseMode
    default_agent: str | None
    allowed_agents: list[str] | None
    knowledge_sources: list[str] | None
    reply: ReplyStyle
    tools: list[str] | None = Field(default=None, description=TOOLS_DESCRIPTION)
    version: int = Field(description="0: never set (the defaults).")
    updated_at: datetime | None
    updated_by: str | None


def settings_out(settings: ChannelSettings) -> ChannelSettingsOut:
    return ChannelSettingsOut(
        channel_id=settings.channel_id, mode=settings.mode, default_agent=settings.default_agent,
        allowed_agents=list(settings.allowed_agents) if settings.allowed_agents is not None else None,
        knowledge_sources=list(settings.knowledge_sources) if settings.knowledge_sources is not None else None,
        reply=settings.reply, tools=list(settings.tools) if settings.tools is not None else None,
        version=settings.version, updated_at=settings.updated_at,
        updated_by=settings.updated_by)


def target(channel_id: str) -> str:
    return f"channel:{channel_id}"


def _check_agents(values: dict[str, Any]) -> None:
    """422 for an agent the catalog does not hold (one Query), or a default the channel refuses."""
    named = [values["default_agent"]] if values.get("default_agent") else []
    named += list(values.get("allowed_agents") or [])
    if named:
        known = {agent.name for agent in list_agents()} | {DEFAULT_AGENT}
        unknown = sorted({name for name in named if name not in known})
        if unknown:
            raise ValidationFailedError(
                f"unknown agent(s): {', '.join(unknown)}",
                details=[{"loc": ["body", "allowed_agents" if name != values.get("default_agent") else "default_agent"],
                          "msg": f"no agent named {name!r}", "type": "value_error"} for name in unknown])
    allowed = values.get("allowed_agents")
    default = values.get("default_agent") or DEFAULT_AGENT
    if allowed is not None and default not in allowed:
        raise ValidationFailedError(
            f"the default agent {default!r} must be one of allowed_agents: it answers messages that name no agent",
            details=[{"loc": ["body", "default_agent"], "msg": "not in allowed_agents", "type": "value_error"}])


def list_page(*, limit: int, cursor: str | None) -> Page[ChannelSettingsOut]:
    results = ChannelSettingsRecord.query(SETTINGS_PK, limit=limit,
                                          last_evaluated_key=start_key(cursor, scope=LIST_SCOPE))
    records, last_key = query_page(results, ChannelSettingsRecord)
    return Page[ChannelSettingsOut](items=[settings_out(ChannelSettings.of(r)) for r in records],
                                    next_cursor=key_cursor(last_key, scope=LIST_SCOPE))


def _write(channel_id: str, values: dict[str, Any], *, version: int | None, actor: Principal,
           request_id: str, action: str) -> tuple[ChannelSettingsOut, bool]:
    """Store ``values`` as the channel's settings, conditional on the version read (and on
    ``version`` when the caller sent one), with the audit entry. (settings, created)."""
    current = read(channel_id)
    if version is not None and version != current.version:
        raise ConflictError(f"channel {channel_id} is at version {current.version}, not {version}: reload and retry")
    _check_agents(values)
    now = utc_now()
    record = ChannelSettingsRecord(
        SETTINGS_PK, channel_id, mode=ResponseMode(values["mode"]).value, default_agent=values.get("default_agent"),
        allowed_agents=values.get("allowed_agents"), knowledge_sources=values.get("knowledge_sources"),
        reply=ReplyStyle(values["reply"]).value, tools=values.get("tools"), version=current.version + 1, updated_at=now,
        updated_by=actor.label)
    after = settings_out(ChannelSettings.of(record))
    condition = (ChannelSettingsRecord.version == current.version) if current.configured \
        else ChannelSettingsRecord.sk.does_not_exist()
    tx = Tx()
    tx.put(record, condition=condition,
           error=ConflictError(f"channel {channel_id} was changed by someone else; reload and retry"))
    tx.audit(audit_log.entry(actor=actor, action=action, target=target(channel_id),
                             before=settings_out(current) if current.configured else None, after=after,
                             request_id=request_id))
    tx.commit()
    forget(channel_id)
    return after, not current.configured


def put(channel_id: str, body: ChannelSettingsIn, *, actor: Principal,
        request_id: str) -> tuple[ChannelSettingsOut, bool]:
    return _write(channel_id, body.model_dump(exclude={"version"}), version=body.version, actor=actor,
                  request_id=request_id, action="channel.put")


def patch(channel_id: str, body: ChannelSettingsPatch, *, actor: Principal, request_id: str) -> ChannelSettingsOut:
    current = settings_out(read(channel_id)).model_dump()
    values = {**current, **body.model_dump(exclude={"version"}, exclude_unset=True)}
    values["mode"] = values["mode"] or ResponseMode.MENTIONS
    values["reply"] = values["reply"] or ReplyStyle.THREAD
    return _write(channel_id, values, version=body.version, actor=actor, request_id=request_id,
                  action="channel.patch")[0]


def delete(channel_id: str, *, actor: Principal, request_id: str) -> ChannelSettingsOut:
    current = read(channel_id)
    if not current.configured:
        raise NotFoundError(f"channel {channel_id} has no settings (it has the defaults)")
    tx = Tx()
    record = ChannelSettingsRecord(SETTINGS_PK, channel_id)
    tx.delete(record, condition=ChannelSettingsRecord.version == current.version,
              error=ConflictError(f"channel {channel_id} was changed by someone else; reload and retry"))
    tx.audit(audit_log.entry(actor=actor, action="channel.delete", target=target(channel_id),
                             before=settings_out(current), after=None, request_id=request_id))
    tx.commit()
    forget(channel_id)
    return settings_out(ChannelSettings(channel_id=channel_id))


def register_channel_routes(app: InsightMeshResolver) -> None:
    # Every /api/channels/<channel_id> route documents 404, as the other routes with a path parameter do:
    # an id the router cannot read as a path segment (e.g. a control character) matches no route.
    def admin(action: str, channel_id: str = "*") -> Principal:
        return authenticate_admin(app, action=action, target=target(channel_id))

    @app.get("/api/channels", summary="List channels with settings", tags=["channels"], security=SECURITY,
             description="Admins only. The channels an admin configured; a channel not listed has the defaults.",
             responses=responses(200, "A page of channel settings", 403))
    def list_channels(limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None) -> Page[ChannelSettingsOut]:
        admin("channel.read")
        return list_page(limit=limit, cursor=cursor)

    @app.get("/api/channels/<channel_id>", summary="Show a channel's settings", tags=["channels"],
             security=SECURITY, description="Admins only. A channel never configured shows the defaults (version 0).",
             responses=responses(200, "The channel's settings", 403, 404))
    def get_channel(channel_id: ChannelIdPath) -> ChannelSettingsOut:
        admin("channel.read", channel_id)
        return settings_out(read(channel_id))

    @app.put("/api/channels/<channel_id>", summary="Set a channel's settings", tags=["channels"], security=SECURITY,
             description="Admins only; audited. Unknown agents, or a default agent outside allowed_agents: 422.",
             responses={**responses(200, "The settings, replaced", 403, 404, 409),
                        201: {"description": "The settings, set for the first time"}})
    def put_channel(channel_id: ChannelIdPath,
                    body: Annotated[ChannelSettingsIn, Body()]) -> Response[ChannelSettingsOut]:
        principal = admin("channel.put", channel_id)
        out, created = put(channel_id, body, actor=principal, request_id=app.correlation_id)
        return Response(status_code=201 if created else 200, content_type=content_types.APPLICATION_JSON, body=out)

    @app.patch("/api/channels/<channel_id>", summary="Change some of a channel's settings", tags=["channels"],
               security=SECURITY, description="Admins only; audited. Only the fields sent change.",
               responses=responses(200, "The settings, changed", 403, 404, 409))
    def patch_channel(channel_id: ChannelIdPath,
                      body: Annotated[ChannelSettingsPatch, Body()]) -> ChannelSettingsOut:
        principal = admin("channel.patch", channel_id)
        return patch(channel_id, body, actor=principal, request_id=app.correlation_id)

    @app.delete("/api/channels/<channel_id>", summary="Reset a channel to the defaults", tags=["channels"],
                security=SECURITY, description="Admins only; audited. 404 when the channel has no settings.",
                responses=responses(200, "The defaults the channel has now", 403, 404, 409))
    def delete_channel(channel_id: ChannelIdPath) -> ChannelSettingsOut:
        principal = admin("channel.delete", channel_id)
        return delete(channel_id, actor=principal, request_id=app.correlation_id)
