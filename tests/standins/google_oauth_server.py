"""A stand-in for Google's OAuth 2.0 endpoints on loopback (stdlib ``ThreadingHTTPServer``, 127.0.0.1).

Start it in-process::

    server = GoogleOAuthServer(port=0, client_id="insightmesh-google", client_secret="s3cret").start()
    try:
        ...   # GOOGLE_AUTHORIZE_URL = server.authorize_url, GOOGLE_TOKEN_URL = server.token_url, ...
    finally:
        server.stop()

It speaks Google's wire format for web-server apps:

* ``GET /o/oauth2/v2/auth?client_id&redirect_uri&response_type=code&scope&state&code_challenge
  &code_challenge_method=S256[&access_type=offline&prompt=consent&include_granted_scopes=true]`` —
  consent is automatic: 302 to ``redirect_uri?state=...&code=...&scope=...`` (the granted scopes,
  space-separated). With :attr:`deny` set: 302 to ``redirect_uri?error=access_denied&state=...``.
  A bad request (unknown client, unregistered redirect URI, no ``code`` response type, no scope,
  no state, no S256 challenge) → 400 JSON ``{"error": "invalid_request", ...}``; no redirect.
* ``POST /token`` (form) — client authentication by ``client_secret_basic`` (raw or form-encoded)
  or ``client_secret_post``, else 401 ``invalid_client``.
  ``grant_type=authorization_code``: the code is single-use (spent by its first presentation,
  whatever the outcome), its ``redirect_uri`` must match, ``BASE64URL(SHA256(code_verifier))``
  must equal its challenge. Answers ``{"access_token", "expires_in", "scope", "token_type":
  "Bearer"}`` plus ``"refresh_token"`` when ``access_type=offline`` was asked.
  ``grant_type=refresh_token``: a new access token (no new refresh token, as Google).
  Unknown, used or revoked codes and tokens → 400 ``invalid_grant``.
* ``POST /revoke`` (form or query ``token=``) — revokes a refresh token with every access token
  issued from it; an access token revokes its refresh token too (as Google). 200 ``{}``; an
  unknown or already revoked token → 400 ``invalid_token``.

Knobs: :attr:`deny`, :attr:`granted_scopes` (partial consent: only these of the requested are
granted), :attr:`access_token_lifetime` (``expires_in``; tokens are also checked against it by
:meth:`is_valid_access_token`), :attr:`issue_refresh_tokens`, :attr:`fail_token_requests` /
:attr:`fail_revoke_requests` (the next N such requests answer 503).

For tests and other stand-ins (e.g. the Admin SDK directory stand-in validating bearer tokens):
:meth:`is_valid_access_token`, :meth:`token_info`, :meth:`tokens` (a copy of the token table),
:meth:`expire_access_tokens`, :meth:`revoke_grant`; everything received is recorded in
:attr:`calls`, :attr:`authorize_requests`, :attr:`token_requests` (client secrets masked) and
:attr:`revocations`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

from tests.standins.http import JsonHandler, ThreadedServer

AUTHORIZE_PATH = "/o/oauth2/v2/auth"
TOKEN_PATH = "/token"
REVOKE_PATH = "/revoke"
SCOPE_PREFIX = "https://www.googleapis.com/auth/"
OPENID_SCOPES = frozenset({"openid", "email", "profile"})


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class IssuedToken:
    """One token the stand-in issued."""

    kind: Literal["access", "refresh"]
    client_id: str
    scopes: frozenset[str]
    issued_at: float
    expires_at: float | None  # access tokens only
    refresh_token: str | None = None  # the grant an access token belongs to
    revoked: bool = False


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    code_challenge: str | None
    scopes: frozenset[str]
    offline: bool


@dataclass
class Revocation:
    token: str
    kind: str
    at: float = field(default_factory=time.time)


class GoogleOAuthServer(ThreadedServer):
    def __init__(self, port: int = 0, *, client_id: str = "insightmesh-google-test",
                 client_secret: str = "google-standin-client-secret",
                 redirect_uris: set[str] | None = None, access_token_lifetime: int = 3599) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = redirect_uris  # None: any absolute http(s) URI is accepted
        self.access_token_lifetime = access_token_lifetime
        self.issue_refresh_tokens = True
        self.deny = False
        self.granted_scopes: set[str] | None = None
        self.fail_token_requests = 0
        self.fail_revoke_requests = 0
        self.lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self.calls: list[tuple[str, str]] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, Any]] = []
        self.revocations: list[Revocation] = []

    # -- addresses ------------------------------------------------------------------------------
    @property
    def authorize_url(self) -> str:
        return self.url + AUTHORIZE_PATH

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def revoke_url(self) -> str:
        return self.url + REVOKE_PATH

    # -- the token table ------------------------------------------------------------------------
    def tokens(self) -> dict[str, IssuedToken]:
        """A copy of every token issued (revoked ones included), by token value."""
        with self.lock:
            return dict(self._tokens)

    def token_info(self, token: str) -> IssuedToken | None:
        with self.lock:
            return self._tokens.get(token)

    def is_valid_access_token(self, token: str, scope: str | None = None) -> bool:
        """Whether ``token`` is an access token issued here, not revoked nor expired, and (when
        ``scope`` is given) granted that scope — what a Google API checks of a bearer token."""
        with self.lock:
            issued = self._tokens.get(token)
        if issued is None or issued.kind != "access" or issued.revoked:
            return False
        if issued.expires_at is not None and issued.expires_at <= time.time():
            return False
        return scope is None or scope in issued.scopes

    def expire_access_tokens(self) -> None:
        """Every access token issued so far expires now (refresh tokens stay valid)."""
        with self.lock:
            for value, issued in list(self._tokens.items()):
                if issued.kind == "access":
                    self._tokens[value] = replace(issued, expires_at=time.time() - 1)

    def revoke_grant(self, token: str) -> bool:
        """Revoke ``token``'s grant as the user would in their Google account (no request recorded)."""
        with self.lock:
            return self._revoke(token)

    def _revoke(self, token: str) -> bool:
        issued = self._tokens.get(token)
        if issued is None or issued.revoked:
            return False
        root = token if issued.kind == "refresh" else issued.refresh_token
        for value, other in list(self._tokens.items()):
            if value == token or (root is not None and (value == root or other.refresh_token == root)):
                self._tokens[value] = replace(other, revoked=True)
        return True

    def _issue(self, kind: Literal["access", "refresh"], client_id: str, scopes: frozenset[str],
               refresh_token: str | None = None) -> str:
        now = time.time()
        if kind == "access":
            value = "ya29.standin-" + secrets.token_urlsafe(32)
            expires_at: float | None = now + self.access_token_lifetime
        else:
            value = "1//standin-" + secrets.token_urlsafe(40)
            expires_at = None
        self._tokens[value] = IssuedToken(kind=kind, client_id=client_id, scopes=scopes, issued_at=now,
                                          expires_at=expires_at, refresh_token=refresh_token)
        return value


class _Handler(JsonHandler):
    server: GoogleOAuthServer
    json_content_type = "application/json; charset=utf-8"

    # -- GET /o/oauth2/v2/auth ----------------------------------------------------------------------
    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        with self.server.lock:
            self.server.calls.append(("GET", parts.path))
        if parts.path != AUTHORIZE_PATH:
            self._send(404, {"error": "not_found"})
            return
        self._authorize({name: values[0] for name, values in parse_qs(parts.query).items()})

    def _authorize(self, query: dict[str, str]) -> None:
        server = self.server
        with server.lock:
            server.authorize_requests.append(query)
        redirect_uri = query.get("redirect_uri") or ""
        target = urlsplit(redirect_uri)
        scopes = frozenset((query.get("scope") or "").split())
        problems = []
        if query.get("client_id") != server.client_id:
            problems.append("unknown client_id")
        if target.scheme not in ("http", "https") or not target.hostname or target.fragment:
            problems.append("redirect_uri must be an absolute URI")
        elif server.redirect_uris is not None and redirect_uri not in server.redirect_uris:
            problems.append("redirect_uri_mismatch")
        if query.get("response_type") != "code":
            problems.append("response_type must be code")
        if not scopes or any(not (s.startswith(SCOPE_PREFIX) or s in OPENID_SCOPES) for s in scopes):
            problems.append("invalid scope")
        if not query.get("state"):
            problems.append("state is required (by this stand-in)")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            problems.append("PKCE S256 is required (by this stand-in)")
        if problems:
            self._send(400, {"error": "invalid_request", "error_description": "; ".join(problems)})
            return
        separator = "&" if target.query else "?"
        if server.deny:
            answer = {"error": "access_denied", "state": query["state"]}
            self._send(302, headers={"Location": f"{redirect_uri}{separator}{urlencode(answer)}"})
            return
        granted = scopes if server.granted_scopes is None else scopes & frozenset(server.granted_scopes)
        code = "4/standin-" + secrets.token_urlsafe(24)
        with server.lock:
            server._codes[code] = _Code(client_id=query["client_id"], redirect_uri=redirect_uri,
                                        code_challenge=query["code_challenge"], scopes=granted,
                                        offline=query.get("access_type") == "offline")
        answer = {"state": query["state"], "code": code, "scope": " ".join(sorted(granted))}
        self._send(302, headers={"Location": f"{redirect_uri}{separator}{urlencode(answer)}"})

    # -- POST /token, POST /revoke ------------------------------------------------------------------
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        parts = urlsplit(self.path)
        with self.server.lock:
            self.server.calls.append(("POST", parts.path))
        form = {name: values[0] for name, values in parse_qs(raw, keep_blank_values=True).items()}
        if parts.path == TOKEN_PATH:
            self._token(form)
        elif parts.path == REVOKE_PATH:
            query = {name: values[0] for name, values in parse_qs(parts.query).items()}
            self._revoke_request(form.get("token") or query.get("token") or "")
        else:
            self._send(404, {"error": "not_found"})

    def _client_credentials(self, form: dict[str, str]) -> tuple[str | None, str | None]:
        authorization = self.headers.get("Authorization") or ""
        if authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None, None
            name, _, secret = decoded.partition(":")
            if (name, secret) != (self.server.client_id, self.server.client_secret):
                name, secret = unquote_plus(name), unquote_plus(secret)  # RFC 6749 §2.3.1 form-encoding
            return name, secret
        return form.get("client_id"), form.get("client_secret")

    def _token(self, form: dict[str, str]) -> None:
        server = self.server
        masked = {name: ("***" if name in ("client_secret", "code_verifier") else value)
                  for name, value in form.items()}
        with server.lock:
            server.token_requests.append({"form": masked, "basic_auth": bool(
                (self.headers.get("Authorization") or "").lower().startswith("basic ")),
                "content_type": self.headers.get("Content-Type")})
            failing = server.fail_token_requests > 0
            if failing:
                server.fail_token_requests -= 1
        if failing:
            self._send(503, {"error": "temporarily_unavailable"})
            return
        client_id, client_secret = self._client_credentials(form)
        if client_id != server.client_id or client_secret != server.client_secret:
            self._send(401, {"error": "invalid_client", "error_description": "The OAuth client was not found."})
            return
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            self._authorization_code(form, client_id)
        elif grant_type == "refresh_token":
            self._refresh(form, client_id)
        else:
            self._send(400, {"error": "unsupported_grant_type"})

    def _authorization_code(self, form: dict[str, str], client_id: str) -> None:
        server = self.server
        with server.lock:
            code = server._codes.pop(form.get("code") or "", None)  # single use, whatever follows
        bad = {"error": "invalid_grant", "error_description": "Malformed auth code."}
        if code is None or code.client_id != client_id:
            self._send(400, bad)
            return
        if form.get("redirect_uri") != code.redirect_uri:
            self._send(400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"})
            return
        if code.code_challenge is not None:
            verifier = form.get("code_verifier") or ""
            if not (43 <= len(verifier) <= 128) or s256(verifier) != code.code_challenge:
                self._send(400, {"error": "invalid_grant", "error_description": "Invalid code verifier."})
                return
        with server.lock:
            refresh_token = (server._issue("refresh", client_id, code.scopes)
                             if code.offline and server.issue_refresh_tokens else None)
            access_token = server._issue("access", client_id, code.scopes, refresh_token)
            lifetime = server.access_token_lifetime
        answer: dict[str, Any] = {"access_token": access_token, "expires_in": lifetime,
                                  "scope": " ".join(sorted(code.scopes)), "token_type": "Bearer"}
        if refresh_token is not None:
            answer["refresh_token"] = refresh_token
        self._send(200, answer)

    def _refresh(self, form: dict[str, str], client_id: str) -> None:
        server = self.server
        value = form.get("refresh_token") or ""
        with server.lock:
            issued = server._tokens.get(value)
            usable = (issued is not None and issued.kind == "refresh" and not issued.revoked
                      and issued.client_id == client_id)
            access_token = server._issue("access", client_id, issued.scopes, value) if usable and issued else None
            lifetime = server.access_token_lifetime
        if access_token is None or issued is None:
            self._send(400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
            return
        self._send(200, {"access_token": access_token, "expires_in": lifetime,
                         "scope": " ".join(sorted(issued.scopes)), "token_type": "Bearer"})

    def _revoke_request(self, token: str) -> None:
        server = self.server
        with server.lock:
            failing = server.fail_revoke_requests > 0
            if failing:
                server.fail_revoke_requests -= 1
            issued = server._tokens.get(token)
            revoked = not failing and server._revoke(token)
            if revoked and issued is not None:
                server.revocations.append(Revocation(token=token, kind=issued.kind))
        if failing:
            self._send(503, {"error": "temporarily_unavailable"})
        elif revoked:
            self._send(200, {})
        else:
            self._send(400, {"error": "invalid_token", "error_description": "Token expired or revoked"})


def start(port: int = 0, **kwargs: Any) -> GoogleOAuthServer:
    """Start a stand-in on 127.0.0.1 (``port=0``: any free port) in a background thread."""
    return GoogleOAuthServer(port, **kwargs).start()
