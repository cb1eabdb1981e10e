"""The console's Jobs pages (admins): the list, a job's form generated from its type's parameter
JSON Schema, its schedule's preview, pause/resume, run now, delete, and a run's page.

As everywhere in the console, each route asks the API and renders its answer. The form's controls
are generated from ``GET /api/job-types`` (one per property, by type); the posted strings are
converted to the schema's types before ``POST``/``PATCH /api/jobs``, and what cannot be converted
is sent as typed, so the API's 422 names it and is shown in place with the form's values kept.
The schedule preview is the API's (``GET /api/jobs/schedule-preview`` for a form, the job's own
``schedule.upcoming`` on its page): the console never computes a fire time itself. A run's page
refreshes itself (``<meta http-equiv="refresh">``, CSP-safe) while the run is queued or running.
A refusal shown in place is a 200 page, as on the console's other pages: the form is the answer,
and a browser would log a 4xx document as a console error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Final, Literal
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from aws_lambda_powertools.event_handler import Response

from insightmesh.console.api import ApiFailure
from insightmesh.console.app import PAGE_SIZE, ConsoleResolver, Session, environment, redirect

Kind = Literal["text", "integer", "number", "checkbox", "select", "lines", "json"]
PARAM: Final = "param."  # the form's name prefix of a job type's parameter
RUNS_SHOWN: Final = 10  # the recent runs on a job's page, one page of GET /api/task-runs?job_id=
ACTIVE_RUN: Final = frozenset({"queued", "running"})
# parse_qs refuses more fields than max_num_fields; app.form() allows 20, fewer than a job type
# with many parameters plus the job's own fields, so this module parses its forms with this bound.
MAX_FIELDS: Final = 80


# -- the form generated from a parameter schema ------------------------------------------------------


@dataclass(frozen=True)
class Control:
    """One form control for one property of a job type's ``parameters_schema``."""

    name: str
    label: str
    kind: Kind
    required: bool
    help: str
    value: str = ""
    checked: bool = False
    options: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    item_kind: str = "string"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def input_name(self) -> str:
        return PARAM + self.name

    @property
    def step(self) -> str:
        return "1" if self.kind == "integer" else "any"


def _property(schema: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
    """A property's schema without pydantic's ``anyOf [X, null]`` of an optional value (and whether
    it was nullable)."""
    options = schema.get("anyOf")
    if isinstance(options, list):
        concrete = [option for option in options if isinstance(option, dict) and option.get("type") != "null"]
        if len(concrete) == 1:
            merged = {**concrete[0], **{key: value for key, value in schema.items() if key != "anyOf"}}
            return merged, len(concrete) < len(options)
    return schema, False


def _kind(prop: Mapping[str, Any]) -> Kind:
    if "enum" in prop:
        return "select"
    match prop.get("type"):
        case "boolean":
            return "checkbox"
        case "integer":
            return "integer"
        case "number":
            return "number"
        case "array":
            return "lines"
        case "string":
            return "text"
        case _:
            return "json"


def _help(prop: Mapping[str, Any], kind: Kind, item_kind: str) -> str:
    parts = [str(prop["description"]).strip()] if prop.get("description") else []
    if kind == "lines":
        parts.append(f"One {'value' if item_kind == 'string' else item_kind} per line.")
    elif kind == "json":
        parts.append("As JSON.")
    low, high = prop.get("minimum"), prop.get("maximum")
    if kind in ("integer", "number") and (low is not None or high is not None):
        parts.append(f"From {low if low is not None else '…'} to {high if high is not None else '…'}.")
    if "default" in prop and prop["default"] not in (None, [], "") and kind != "checkbox":
        parts.append(f"Default: {_shown(prop['default'], kind)}.")
    return " ".join(parts)


def _shown(value: Any, kind: Kind) -> str:
    """A stored value as the control shows it."""
    if value is None:
        return ""
    if kind == "lines" and isinstance(value, list):
        return "\n".join(str(item) for item in value)
    if kind == "json":
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def controls(schema: Mapping[str, Any], *, stored: Mapping[str, Any] | None = None,
             posted: Mapping[str, str] | None = None) -> list[Control]:
    """The controls of ``schema`` showing ``posted`` (a form sent back), else ``stored`` (the job's
    parameters), else the schema's defaults."""
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    out = []
    for name, original in properties.items():
        prop, _ = _property(original)
        kind = _kind(prop)
        items = prop.get("items")
        item_kind = str(items.get("type") or "string") if isinstance(items, dict) else "string"
        if posted is not None:
            text = posted.get(PARAM + name, "")
            checked = text == "true"
        else:
            value = (stored or {}).get(name, prop.get("default"))
            text, checked = _shown(value, kind), value is True
        maximum = prop.get("maxLength")
        out.append(Control(
            name=name, label=str(prop.get("title") or name), kind=kind, required=name in required,
            help=_help(prop, kind, item_kind), value=text, checked=checked,
            options=tuple(str(option) for option in prop.get("enum") or ()),
            minimum=prop.get("minimum"), maximum=prop.get("maximum"),
            max_length=maximum if isinstance(maximum, int) else None, item_kind=item_kind, raw=prop))
    return out


def _convert(text: str, kind: str) -> Any:
    """``text`` as the schema's ``kind``; as typed when it is not one (the API's 422 then names it)."""
    try:
        match kind:
            case "integer":
                return int(text)
            case "number":
                number = float(text)
                return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
            case "boolean":
                return text.lower() in ("true", "yes", "1", "on")
    except ValueError:
        return text
    return text


def parameters(schema: Mapping[str, Any], posted: Mapping[str, str]) -> dict[str, Any]:
    """The parameters a posted form gives, converted to the schema's types; an empty control is left
    out (the type's default applies, and a required one is the API's 422)."""
    out: dict[str, Any] = {}
    for control in controls(schema, posted=posted):
        if control.kind == "checkbox":
            out[control.name] = control.checked
            continue
        text = control.value.strip()
        if not text:
            continue
        if control.kind == "lines":
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            out[control.name] = [_convert(line, control.item_kind) for line in lines]
        elif control.kind == "select":
            enum = control.raw.get("enum") or []
            out[control.name] = next((option for option in enum if str(option) == text), text)
        elif control.kind == "json":
            try:
                out[control.name] = json.loads(text)
            except json.JSONDecodeError:
                out[control.name] = text
        else:
            out[control.name] = _convert(text, control.kind)
    return out


# -- rendering helpers --------------------------------------------------------------------------------


@cache
def time_zones() -> tuple[str, ...]:
    """The IANA zones offered in the schedule's select (UTC first)."""
    return ("UTC", *sorted(zone for zone in available_timezones() if "/" in zone and not zone.startswith("Etc/")))


def in_zone(value: Any, zone: str) -> str:
    """An API time (UTC, ISO 8601) on the wall clock of ``zone``: ``Mon 7 Dec 2026 09:00 CET``. The
    time is the API's; this only changes how it is written."""
    try:
        moment = datetime.fromisoformat(str(value)).astimezone(ZoneInfo(zone))
    except (ValueError, ZoneInfoNotFoundError):
        return str(value)
    return moment.strftime("%a %-d %b %Y %H:%M %Z")


def duration(milliseconds: Any) -> str:
    """``1.2 s``, ``3 min 4 s``, ``2 h 5 min`` for a run's duration."""
    if milliseconds is None:
        return "—"
    seconds = int(milliseconds) / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _setup() -> None:
    env = environment()
    env.filters["in_zone"] = in_zone
    env.filters["duration"] = duration


def invalid_fields(error: ApiFailure | None) -> frozenset[str]:
    """The form fields an API error's details name: ``body.parameters.page_size`` is
    ``param.page_size``, ``body.schedule.expression`` or ``query.expression`` is ``expression``."""
    names = set()
    for detail in error.details if error is not None else []:
        loc = [str(part) for part in detail.get("loc") or [] if str(part) not in ("body", "query", "schedule")]
        if len(loc) >= 2 and loc[0] == "parameters":
            names.add(PARAM + loc[1])
        elif loc:
            names.add(loc[0])
    return frozenset(names)


def form_fields(body: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(body, max_num_fields=MAX_FIELDS).items()}


# -- the routes ------------------------------------------------------------------------------------


@dataclass
class Draft:
    """What a job form shows: the job's fields and its parameters' controls, posted or stored."""

    job_type: Mapping[str, Any]
    name: str = ""
    description: str = ""
    expression: str = "rate(1 day)"
    timezone: str = "UTC"
    enabled: bool = True
    controls: list[Control] = field(default_factory=list)


def register(app: ConsoleResolver) -> None:
    """Add the Jobs routes to ``app``."""
    _setup()

    def posted() -> dict[str, str]:
        try:
            return form_fields(app.current_event.decoded_body or "")
        except ValueError:  # more fields than any job form has
            return {}

    # Every page here is an admin's (signed_in(admin=True)): GET /api/job-types answers a member too.
    def job_types(session: Session) -> list[dict[str, Any]]:
        return list(app.fetch("/api/job-types", session=session)["items"])

    # -- the list --------------------------------------------------------------------------------

    @app.get("/console/jobs")
    def _jobs() -> Response[str]:
        session = app.signed_in(admin=True)
        cursor = app.query("cursor") or ""
        jobs = app.fetch("/api/jobs", session=session, query={"limit": str(PAGE_SIZE), "cursor": cursor})
        return app.page("jobs.html", session=session, jobs=jobs["items"], next_cursor=jobs.get("next_cursor"),
                        request_cursor=cursor)

    # -- the form: create and edit -------------------------------------------------------------

    def form_page(session: Session, draft: Draft, *, job: Mapping[str, Any] | None = None,
                  error: ApiFailure | None = None, preview: Mapping[str, Any] | None = None) -> Response[str]:
        return app.page("job_form.html", session=session, draft=draft, job=job, error=error,
                        invalid=invalid_fields(error), preview=preview, time_zones=time_zones())

    @app.get("/console/jobs/new")
    def _new_job() -> Response[str]:
        session = app.signed_in(admin=True)
        types = job_types(session)
        chosen = next((item for item in types if item["name"] == app.query("type")), None)
        if chosen is None:
            return app.page("job_type.html", session=session, job_types=types, asked=app.query("type"))
        return form_page(session, Draft(job_type=chosen, controls=controls(chosen["parameters_schema"])))

    def draft_of(job_type: Mapping[str, Any], raw: Mapping[str, str], *, enabled: bool) -> Draft:
        return Draft(job_type=job_type, name=raw.get("name", ""), description=raw.get("description", ""),
                     expression=raw.get("expression", ""), timezone=raw.get("timezone", "UTC"), enabled=enabled,
                     controls=controls(job_type["parameters_schema"], posted=raw))

    def previewed(session: Session, draft: Draft, job: Mapping[str, Any] | None) -> Response[str]:
        answer = app.call("GET", "/api/jobs/schedule-preview",
                          query={"expression": draft.expression, "timezone": draft.timezone})
        if answer.status in (401, 403):
            return app.failure(answer.error, session=session)
        if not answer.ok:
            return form_page(session, draft, job=job, error=answer.error)
        return form_page(session, draft, job=job, preview=answer.body)

    @app.post("/console/jobs/new")
    def _create_job() -> Response[str]:
        session = app.signed_in(admin=True)
        raw = posted()
        types = job_types(session)
        chosen = next((item for item in types if item["name"] == raw.get("job_type")), None)
        if chosen is None:
            return app.page("job_type.html", session=session, job_types=types,
                            asked=raw.get("job_type"))
        draft = draft_of(chosen, raw, enabled=raw.get("enabled") == "true")
        if raw.get("action") == "preview":
            return previewed(session, draft, None)
        body = {"name": draft.name, "job_type": chosen["name"], "description": draft.description,
                "schedule": {"expression": draft.expression, "timezone": draft.timezone},
                "parameters": parameters(chosen["parameters_schema"], raw), "enabled": draft.enabled}
        answer = app.call("POST", "/api/jobs", body=body, csrf_token=raw.get("csrf_token", ""))
        if answer.ok:
            return redirect(f"/console/jobs/{answer.body['job_id']}?notice=job-created")
        if answer.status in (401, 403):
            return app.failure(answer.error, session=session)
        return form_page(session, draft, error=answer.error)

    def load_job(session: Session, job_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The job and its type; else (raised, see PageInstead) the API's refusal as a page."""
        job: dict[str, Any] = app.fetch(f"/api/jobs/{job_id}", session=session)
        types = job_types(session)
        chosen = next((item for item in types if item["name"] == job["job_type"]), None)
        if chosen is None:  # a type no longer known: its parameters are shown as JSON
            chosen = {"name": job["job_type"], "title": job["job_type"], "description": "",
                      "parameters_schema": {"properties": {key: {} for key in job["parameters"]}}}
        return job, chosen

    @app.get("/console/jobs/<job_id>/edit")
    def _edit_job(job_id: str) -> Response[str]:
        session = app.signed_in(admin=True)
        job, chosen = load_job(session, job_id)
        draft = Draft(job_type=chosen, name=job["name"], description=job["description"],
                      expression=job["schedule"]["expression"], timezone=job["schedule"]["timezone"],
                      enabled=job["enabled"],
                      controls=controls(chosen["parameters_schema"], stored=job["parameters"]))
        return form_page(session, draft, job=job)

    @app.post("/console/jobs/<job_id>/edit")
    def _update_job(job_id: str) -> Response[str]:
        session = app.signed_in(admin=True)
        job, chosen = load_job(session, job_id)
        raw = posted()
        draft = draft_of(chosen, raw, enabled=job["enabled"])
        # The version the form was read at: a change since then is the API's 409, shown in place.
        shown = {**job, "version": raw.get("version", job["version"])}
        if raw.get("action") == "preview":
            return previewed(session, draft, shown)
        version: Any = raw.get("version", "")
        try:
            version = int(version)
        except ValueError:
            pass  # sent as typed: the API's 422 names it
        body = {"version": version, "name": draft.name, "description": draft.description,
                "schedule": {"expression": draft.expression, "timezone": draft.timezone},
                "parameters": parameters(chosen["parameters_schema"], raw)}
        answer = app.call("PATCH", f"/api/jobs/{job_id}", body=body, csrf_token=raw.get("csrf_token", ""))
        if answer.ok:
            return redirect(f"/console/jobs/{job_id}?notice=job-updated")
        if answer.status in (401, 403, 404):
            return app.failure(answer.error, session=session)
        if answer.status == 409:  # changed meanwhile: the form keeps the values, with the stored version
            shown = job
        return form_page(session, draft, job=shown, error=answer.error)

    # -- one job: its page, state, run now, delete -----------------------------------------------

    def job_page(session: Session, job_id: str, *, error: ApiFailure | None = None) -> Response[str]:
        job, chosen = load_job(session, job_id)
        cursor = app.query("cursor") or ""
        runs = app.fetch("/api/task-runs", session=session,
                         query={"job_id": job_id, "limit": str(RUNS_SHOWN), "cursor": cursor})
        return app.page("job.html", session=session, job=job, job_type=chosen,
                        controls=controls(chosen["parameters_schema"], stored=job["parameters"]),
                        runs=runs["items"], next_cursor=runs.get("next_cursor"), request_cursor=cursor,
                        error=error)

    @app.get("/console/jobs/<job_id>")
    def _job(job_id: str) -> Response[str]:
        return job_page(app.signed_in(admin=True), job_id)

    def action(job_id: str, method: str, path: str, notice: str) -> Response[str]:
        session = app.signed_in(admin=True)
        answer = app.call(method, path, csrf_token=posted().get("csrf_token", ""))
        if answer.ok:
            if isinstance(answer.body, dict) and "run_id" in answer.body:
                return redirect(f"/console/runs/{answer.body['run_id']}?notice={notice}")
            return redirect(f"/console/jobs/{job_id}?notice={notice}" if method != "DELETE"
                            else f"/console/jobs?notice={notice}")
        if answer.status in (401, 403, 404):
            return app.failure(answer.error, session=session)
        return job_page(session, job_id, error=answer.error)

    def action_route(name: str, notice: str) -> None:
        def _action(job_id: str) -> Response[str]:
            return action(job_id, "POST", f"/api/jobs/{job_id}/{name}", notice)

        app.post(f"/console/jobs/<job_id>/{name}")(_action)

    for name, notice in (("pause", "job-paused"), ("resume", "job-resumed"), ("run", "run-queued")):
        action_route(name, notice)

    @app.get("/console/jobs/<job_id>/delete")
    def _confirm_delete(job_id: str) -> Response[str]:
        session = app.signed_in(admin=True)
        job = app.fetch(f"/api/jobs/{job_id}", session=session)
        return app.page("confirm.html", session=session, title="Delete a job",
                        question=f"Delete the job “{job['name']}” and its schedule? It will not run again; "
                                 "its runs are kept for 90 days.",
                        action=f"/console/jobs/{job_id}/delete", button="Delete job",
                        cancel=f"/console/jobs/{job_id}")

    @app.post("/console/jobs/<job_id>/delete")
    def _delete_job(job_id: str) -> Response[str]:
        return action(job_id, "DELETE", f"/api/jobs/{job_id}", "job-deleted")

    # -- a run --------------------------------------------------------------------------------------

    @app.get("/console/runs/<run_id>")
    def _run(run_id: str) -> Response[str]:
        session = app.signed_in(admin=True)
        run = app.fetch(f"/api/task-runs/{run_id}", session=session)
        return app.page("run.html", session=session, run=run, refreshing=run["status"] in ACTIVE_RUN)


__all__ = ["Control", "controls", "parameters", "register"]
