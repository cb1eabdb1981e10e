"""The console: server-rendered pages under ``/console/``, a client of ``/api`` and ``/auth``.

Every page reads and every form writes through :class:`insightmesh.console.api.InProcessApi`, with
the browser's cookie and the CSRF token its form echoed, so the API's guard, validation, audit and
error envelope decide; the console only renders. What the API refuses is shown in place (a form's
error) or as a page (401 → sign in, 403, 404). Forms post back to the console and redirect (303)
after success, so the pages work without script; ``console.js`` only shows times in the viewer's
time zone. Every response carries :data:`CSP`; static files are fingerprinted and immutable.

How a page uses the shared pieces: ``session = app.signed_in(admin=True)`` (or the sign-in/403 page
instead), ``body = app.fetch(path, session=session)`` (or the API's refusal as a page instead),
``items, error = app.search(path, query)``, ``form = app.validated(Model, raw, redisplay)`` (the
422 in place instead), then ``app.submit(method, path, ..., done=..., redisplay=...)`` (303 with
``?notice=``, or the API's error in place) — or the three at once, ``app.post_back(method, path,
done=..., redisplay=...)``; templates ``{% import "macros.html" as ui %}`` for ``ui.alert``,
``ui.table``, ``ui.pager``, ``ui.csrf`` and ``ui.confirm_link`` (see that file).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, quote, urlencode

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as PowertoolsNotFound
from aws_lambda_powertools.utilities.typing import LambdaContext
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from insightmesh.api.app import InsightMeshResolver
from insightmesh.auth.guard import one_request
from insightmesh.auth.sessions import RawCookie
from insightmesh.config import get_settings
from insightmesh.console import assets
from insightmesh.console.api import ApiFailure, ApiResponse, Caller, InProcessApi, Resolver
from insightmesh.observability import get_logger

CSP: Final = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
              "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HTML: Final = "text/html; charset=utf-8"
HOME: Final = "/console"  # API Gateway: /console/ against /console/{proxy+} is not documented
PAGE_SIZE: Final = 25
NOTICES: Final = {
    "token-revoked": "The token is revoked.",
    "group-created": "The group is created.",
    "group-updated": "The description is saved.",
    "group-deleted": "The group is deleted.",
    "member-added": "The member is added.",
    "member-removed": "The member is removed.",
    "agent-updated": "The agent's settings are saved.",
    "agent-enabled": "The agent is enabled.",
    "agent-disabled": "The agent is disabled.",
    "agent-deleted": "The agent is deleted.",
    "agent-restored": "The agent is restored.",
    "grant-added": "The grant is saved.",
    "grant-removed": "The grant is removed.",
    "admin-granted": "The user is an admin now.",
    "admin-revoked": "The user's admin rights are revoked.",
    "user-token-revoked": "The user's token is revoked.",
    "credential-deleted": "The credential is revoked at Google and deleted.",
    "credential-deleted-unrevoked": "The credential is deleted, but Google could not be reached: revoke the app's "
                                    "access in the Google account.",
    "job-created": "The job is created.",
    "job-updated": "The job is saved.",
    "job-paused": "The job is paused: its schedule will not fire.",
    "job-resumed": "The job is resumed: its schedule fires again.",
    "job-deleted": "The job and its schedule are deleted.",
    "run-queued": "The run is queued.",
}
# How the console names an agent's visibility (the API's values are public, admins, restricted).
VISIBILITY: Final = {"public": "everyone", "admins": "admins only", "restricted": "by grant"}
# The admin pages of issue 13, in navigation order; those not built yet are shown as to come.
ADMIN_PAGES: Final = (("Dashboard", "/console/dashboard"), ("Agents", "/console/agents"), ("Groups", "/console/groups"),
                      ("Users", "/console/users"), ("Jobs", "/console/jobs"), ("Credentials", "/console/credentials"),
                      ("Knowledge", "/console/knowledge"), ("Audit", "/console/audit"))
ERROR_TITLES: Final = {400: "This request cannot be used", 401: "Sign in", 403: "Not allowed", 404: "Not found",
                       409: "Conflict", 422: "Not valid", 429: "Too many requests"}


# -- forms (pydantic: what a console form may post) ------------------------------------------------


class _Form(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=True)

    csrf_token: str = Field(default="", max_length=256)


class LoginForm(_Form):
    token: str = Field(min_length=1, max_length=128)


class GroupForm(_Form):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2000)


class DescriptionForm(_Form):
    description: str = Field(default="", max_length=2000)


class MemberForm(_Form):
    user_id: str = Field(min_length=1, max_length=200)


# -- rendering ------------------------------------------------------------------------------------


def _utc(value: Any) -> str:
    """``2026-12-07 01:05 UTC`` for an ISO 8601 time (what the page shows before the script runs)."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _when(value: Any) -> Markup:
    """A ``<time>`` the script shows in the viewer's time zone, with UTC in its tooltip."""
    if not value:
        return Markup("—")
    shown = _utc(value)
    return Markup('<time datetime="{0}" title="{1}">{1}</time>').format(str(value), shown)


def _sentence(value: Any) -> str:
    """An API message as a sentence: with a full stop, but not capitalised, since the API's messages
    often start with an identifier whose case matters ("meddic is public", "u-7 is already a member")."""
    text = str(value).strip()
    return text if not text or text[-1] in ".!?" else text + "."


def _query(params: Mapping[str, object] | None, **more: object) -> str:
    """``actor=a%40b&cursor=…`` for a pager link: the page's filters (and the cursor) with the empty
    ones left out, since the API's cursor is signed for the filters it was issued with. Jinja's own
    ``urlencode`` filter cannot leave out the empty values."""
    kept = {name: value for name, value in {**(params or {}), **more}.items() if value}
    return urlencode(kept)


@cache
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    env.globals["asset"] = assets.url_for
    env.filters["when"] = _when
    env.filters["sentence"] = _sentence
    env.filters["urlpart"] = lambda value: quote(str(value), safe="")
    env.filters["query"] = _query
    env.globals["visibility"] = VISIBILITY
    return env


FormT = TypeVar("FormT", bound=_Form)
Redisplay = Callable[[ApiFailure], "Response[str]"]  # the page again, with the error in place
PageAgain = Callable[["Session", ApiFailure, dict[str, str]], "Response[str]"]  # ... for a session and form values


class PageInstead(Exception):  # not an error: a page to answer with, raised from a helper
    """Raised by :meth:`ConsoleResolver.signed_in` and :meth:`~ConsoleResolver.validated`: the
    resolver answers with ``response`` (the sign-in or 403 page, the form with its error), so a route
    reads straight through without an ``isinstance`` check after each step."""

    def __init__(self, response: Response[str]) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass(frozen=True)
class Session:
    user_id: str
    email: str | None
    is_admin: bool
    csrf_token: str


class ConsoleResolver(InsightMeshResolver):
    """The console's resolver: HTML error pages, the CSP on every response, immutable static files."""

    def __init__(self, *, api: InProcessApi, **kwargs: Any) -> None:
        self.api = api
        super().__init__(**kwargs)

    def _install_error_handlers(self) -> None:
        super()._install_error_handlers()

        @self.not_found
        def _not_found(_: PowertoolsNotFound) -> Response[str]:
            return self.page("message.html", status=404, title="Not found",
                             message="There is no console page at this address.")

        @self.exception_handler(PageInstead)  # type: ignore[untyped-decorator]  # powertools: untyped
        def _page_instead(instead: PageInstead) -> Response[str]:
            return instead.response

        @self.exception_handler(Exception)  # type: ignore[untyped-decorator]  # powertools: untyped
        def _unexpected(error: Exception) -> Response[str]:
            # The one top-level place where an unexpected error is logged with its context.
            self.logger.exception("unhandled error", extra={"error_type": type(error).__name__})
            return self.page("message.html", status=500, title="Something went wrong",
                             message="The console could not show this page.", request_id=self.correlation_id)

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        # A page's API calls serve one browser request: they authenticate it once (see guard).
        with one_request():
            response = super().resolve(event, context)
        headers = response["headers"]
        headers["Content-Security-Policy"] = CSP
        path = str(event.get("rawPath") or "")
        if path.startswith(assets.STATIC_PREFIX) and response.get("statusCode") == 200:
            headers["Cache-Control"] = assets.IMMUTABLE
        return response

    # -- helpers the routes use -------------------------------------------------------------------
    def page(self, template: str, *, status: int = 200, session: Session | None = None,
             **values: Any) -> Response[str]:
        notice = NOTICES.get(self.current_event.query_string_parameters.get("notice") or "")
        html = environment().get_template(template).render(
            session=session, admin_pages=ADMIN_PAGES, path=self.current_event.path, notice=notice, **values)
        return Response(status_code=status, content_type=HTML, body=html)

    def failure(self, failure: ApiFailure, *, session: Session | None = None) -> Response[str]:
        if failure.status == 401:
            return self.sign_in_page(status=401)
        return self.page("message.html", status=failure.status, session=session,
                         title=ERROR_TITLES.get(failure.status, "Something went wrong"), message=failure.message,
                         request_id=failure.request_id)

    def sign_in_page(self, *, status: int = 200) -> Response[str]:
        from insightmesh.auth.oidc_provider import get_oidc_settings

        return self.page("signin.html", status=status, oidc=get_oidc_settings().configured)

    def caller(self, csrf_token: str | None = None) -> Caller:
        event = self.current_event
        from insightmesh.auth.guard import cookie_header

        return Caller(cookie=cookie_header(event.raw_event), source_ip=event.request_context.http.source_ip,
                      user_agent=event.request_context.http.user_agent or "", request_id=self.correlation_id,
                      csrf_token=csrf_token)

    def call(self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: Any = None,
             csrf_token: str | None = None) -> ApiResponse:
        return self.api.call(method, path, caller=self.caller(csrf_token), context=self.lambda_context,
                             query={key: value for key, value in (query or {}).items() if value}, body=body)

    def session(self) -> Session | None:
        """The caller's session, ``None`` when signed out (401); any other refusal — a 429 when the
        caller's rate limit is spent, say — is raised as its page, not shown as the sign-in page."""
        answer = self.call("GET", "/auth/session")
        if answer.status == 401:
            return None
        if not answer.ok or not isinstance(answer.body, dict):
            raise PageInstead(self.failure(answer.error))
        body = answer.body
        return Session(user_id=str(body["user_id"]), email=body.get("email"), is_admin=bool(body.get("is_admin")),
                       csrf_token=str(body.get("csrf_token") or ""))

    def fetch(self, path: str, *, session: Session | None, query: Mapping[str, str] | None = None) -> Any:
        """The body of a GET the page cannot do without; else (raised) the API's refusal as a page."""
        answer = self.call("GET", path, query=query)
        if not answer.ok:
            raise PageInstead(self.failure(answer.error, session=session))
        return answer.body

    def search(self, path: str, query: Mapping[str, str]) -> tuple[list[Any], ApiFailure | None]:
        """The items of a GET a page can do without (a search's results), or its refusal to show in place."""
        answer = self.call("GET", path, query=query)
        return (list(answer.body["items"]), None) if answer.ok else ([], answer.error)

    def signed_in(self, *, admin: bool = False) -> Session:
        """The caller's session; else (raised, see :class:`PageInstead`) the sign-in page (401), or a
        403 page when ``admin`` and the caller is not one (for pages whose API also answers members)."""
        session = self.session()
        if session is None:
            raise PageInstead(self.sign_in_page(status=401))
        if admin and not session.is_admin:
            raise PageInstead(self.failure(ApiFailure(403, "forbidden", "This page requires an admin."),
                                           session=session))
        return session

    def validated(self, model: type[FormT], raw: Mapping[str, str], redisplay: Redisplay) -> FormT:
        """``raw`` as a ``model``; else (raised) ``redisplay`` of the 422, which keeps the form's values."""
        try:
            return model.model_validate(raw)
        except ValidationError as error:
            raise PageInstead(redisplay(invalid(error))) from None

    def submit(self, method: str, path: str, *, session: Session, csrf_token: str, done: str,
               redisplay: Redisplay, body: Any = None, as_page: Collection[int] = (401, 403)) -> Response[str]:
        """Call the API; on success redirect (303) to ``done`` (with its ``?notice=``); a refusal in
        ``as_page`` (not signed in, not allowed) is a page, any other is ``redisplay``-ed in place."""
        answer = self.call(method, path, body=body, csrf_token=csrf_token)
        if answer.ok:
            return redirect(done)
        if answer.status in as_page:
            return self.failure(answer.error, session=session)
        return redisplay(answer.error)

    def post_back(self, method: str, path: str, *, done: str, redisplay: PageAgain, model: type[_Form] = _Form,
                  body: Callable[[Any], Any] = lambda _: None, admin: bool = False,
                  as_page: Collection[int] = (401, 403)) -> Response[str]:
        """A form's whole post-back: :meth:`signed_in`, the form as ``model`` (:meth:`validated`), the
        API called with ``body(form)`` (:meth:`submit`); a refusal is ``redisplay(session, error, raw)``,
        the page again with the error in place and the form's values kept."""
        session, raw = self.signed_in(admin=admin), self.form()

        def again(error: ApiFailure) -> Response[str]:
            return redisplay(session, error, raw)

        form = self.validated(model, raw, again)
        return self.submit(method, path, session=session, csrf_token=form.csrf_token, body=body(form), done=done,
                           redisplay=again, as_page=as_page)

    def form(self) -> dict[str, str]:
        body = self.current_event.decoded_body or ""
        return {key: values[0] for key, values in parse_qs(body, max_num_fields=20).items()}

    def query(self, name: str) -> str | None:
        value = self.current_event.query_string_parameters.get(name)
        return value[:512] if value else None


def redirect(location: str, *, cookies: Sequence[str] = ()) -> Response[str]:
    return Response(status_code=303, headers={"Location": location}, body="",
                    cookies=[RawCookie(cookie) for cookie in cookies])


def invalid(error: ValidationError) -> ApiFailure:
    fields = ", ".join(".".join(str(part) for part in item["loc"]) for item in error.errors())
    return ApiFailure(422, "validation_error", f"check these fields: {fields}")


def build_console_app(apps: Sequence[Resolver]) -> ConsoleResolver:
    """The console, dispatching to ``apps`` (the admin and tasks APIs, built by their factories)."""
    from insightmesh.console import (
        agent_pages,
        audit_pages,
        credential_pages,
        dashboard_pages,
        job_pages,
        knowledge_pages,
        pages,
        user_pages,
    )

    app = ConsoleResolver(api=InProcessApi(apps), settings=get_settings(), logger=get_logger("console"))
    pages.register(app)
    agent_pages.register(app)
    user_pages.register(app)
    credential_pages.register(app)
    job_pages.register(app)
    knowledge_pages.register(app)
    audit_pages.register(app)
    dashboard_pages.register(app)
    return app


__all__ = ["CSP", "ConsoleResolver", "build_console_app"]
