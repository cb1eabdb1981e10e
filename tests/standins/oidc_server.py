"""A stand-in OpenID Connect provider on loopback (stdlib ``ThreadingHTTPServer``, 127.0.0.1).

Start it in-process::

    server = start(client_id="insightmesh-test", client_secret="s3cret")
    try:
        ...   # OIDC_ISSUER = server.issuer
    finally:
        server.stop()

It speaks the wire format of the Authorization Code flow with PKCE:

* ``GET /.well-known/openid-configuration`` — the discovery document (``issuer`` is
  ``http://127.0.0.1:<port>``);
* ``GET /jwks`` — the public key set (RSA, ``kid``, ``use: sig``, ``alg: RS256``);
* ``GET /authorize?response_type=code&client_id&redirect_uri&scope&state&nonce&code_challenge
  &code_challenge_method=S256`` — records the request; with ``auto_approve`` (the default)
  answers 302 to ``redirect_uri?code=...&state=...`` for the current :attr:`user`, else 200 with
  the recorded request (a test then calls :meth:`issue_code`). A bad request (unknown client,
  no S256 challenge, no ``openid`` scope) → 400 JSON error;
* ``POST /token`` (form) — client authentication by ``client_secret_basic`` or
  ``client_secret_post``; ``grant_type=authorization_code``; the code is single-use (spent by its
  first presentation, whatever the outcome), its ``redirect_uri`` must match, and
  ``BASE64URL(SHA256(code_verifier))`` must equal its ``code_challenge``. Answers
  ``{"access_token", "token_type": "Bearer", "expires_in", "scope", "id_token"}``, the ID token
  an RS256 JWS with ``kid``. Errors are RFC 6749 ``{"error": ...}`` with 400/401.

Knobs (set before the token request; they shape the next ID tokens): :attr:`user`
(``sub``, ``email``, ``email_verified``, ``name``), :attr:`tamper` — ``nonce`` (wrong nonce),
``audience``, ``issuer``, ``expires_in`` (negative = already expired), ``sign_with_unknown_key``
(a key not in the JWKS), ``extra_claims``; :meth:`rotate_key` (a new ``kid``, the JWKS updated).
Everything received is recorded in :attr:`authorize_requests` / :attr:`token_requests`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.standins.http import JsonHandler, ThreadedServer


@dataclass
class StandinUser:
    sub: str = "idp-user-1"
    email: str = "alice@example.com"
    email_verified: Any = True
    name: str | None = "Alice Example"


@dataclass
class Tamper:
    nonce: str | None = None  # put this nonce in the ID token instead of the requested one
    audience: Any = None  # str or list: the ID token's aud instead of the client id
    issuer: str | None = None  # the ID token's iss instead of the issuer
    expires_in: int = 300  # seconds from now; negative: already expired
    issued_at_offset: int = 0  # added to iat
    sign_with_unknown_key: bool = False
    extra_claims: dict[str, Any] = field(default_factory=dict)


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    scope: str
    user: StandinUser


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def _new_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8), "use": "sig", "alg": "RS256"})


class OidcStandin(ThreadedServer):
    def __init__(self, port: int = 0, *, client_id: str = "insightmesh-test",
                 client_secret: str = "standin-client-secret") -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.client_id = client_id
        self.client_secret = client_secret
        self.lock = threading.Lock()
        self.key = _new_key()
        self.retired_keys: list[RSAKey] = []
        self.user = StandinUser()
        self.tamper = Tamper()
        self.auto_approve = True
        self.codes: dict[str, Grant] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, Any]] = []
        self.jwks_requests = 0
        self.discovery_requests = 0

    # -- addresses ------------------------------------------------------------------------------
    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email", "email_verified", "name"],
        }

    def jwks(self) -> dict[str, Any]:
        keys = [self.key, *self.retired_keys]
        return {"keys": [key.as_dict(private=False) for key in keys]}

    # -- test helpers ---------------------------------------------------------------------------
    def rotate_key(self) -> None:
        """Sign with a new key from now on; the JWKS lists it (the old one stays listed)."""
        with self.lock:
            self.retired_keys.append(self.key)
            self.key = _new_key()

    def issue_code(self, *, nonce: str | None, code_challenge: str, redirect_uri: str,
                   client_id: str | None = None, scope: str = "openid email profile",
                   user: StandinUser | None = None) -> str:
        """Approve an authorization request by hand: the code the IdP would send to the callback."""
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.codes[code] = Grant(client_id or self.client_id, redirect_uri, code_challenge, nonce, scope,
                                     user or StandinUser(**vars(self.user)))
        return code

    def mint_id_token(self, grant: Grant) -> str:
        now = int(time.time())
        tamper = self.tamper
        claims: dict[str, Any] = {
            "iss": tamper.issuer or self.issuer,
            "sub": grant.user.sub,
            "aud": tamper.audience if tamper.audience is not None else grant.client_id,
            "iat": now + tamper.issued_at_offset,
            "exp": now + tamper.expires_in,
            "email": grant.user.email,
            "email_verified": grant.user.email_verified,
        }
        if grant.user.name is not None:
            claims["name"] = grant.user.name
        nonce = tamper.nonce if tamper.nonce is not None else grant.nonce
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(tamper.extra_claims)
        key = _new_key() if tamper.sign_with_unknown_key else self.key
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


class _Handler(JsonHandler):
    server: OidcStandin

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/.well-known/openid-configuration":
            self.server.discovery_requests += 1
            self._send(200, self.server.discovery())
        elif parts.path == "/jwks":
            self.server.jwks_requests += 1
            self._send(200, self.server.jwks())
        elif parts.path == "/authorize":
            self._authorize({name: values[0] for name, values in parse_qs(parts.query).items()})
        else:
            self._send(404, {"error": "not_found"})

    def _authorize(self, query: dict[str, str]) -> None:
        server = self.server
        with server.lock:
            server.authorize_requests.append(query)
        problems = []
        if query.get("response_type") != "code":
            problems.append("response_type must be code")
        if query.get("client_id") != server.client_id:
            problems.append("unknown client_id")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            problems.append("PKCE S256 is required")
        if "openid" not in (query.get("scope") or "").split():
            problems.append("scope must include openid")
        if not query.get("redirect_uri"):
            problems.append("redirect_uri is required")
        if problems:
            self._send(400, {"error": "invalid_request", "error_description": "; ".join(problems)})
            return
        if not server.auto_approve:
            self._send(200, {"recorded": query})
            return
        code = server.issue_code(nonce=query.get("nonce"), code_challenge=query["code_challenge"],
                                 redirect_uri=query["redirect_uri"], client_id=query["client_id"],
                                 scope=query["scope"])
        answer = {"code": code}
        if "state" in query:
            answer["state"] = query["state"]
        self._send(302, headers={"Location": f"{query['redirect_uri']}?{urlencode(answer)}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        if urlsplit(self.path).path != "/token":
            self._send(404, {"error": "not_found"})
            return
        form = {name: values[0] for name, values in parse_qs(raw, keep_blank_values=True).items()}
        server = self.server
        with server.lock:
            server.token_requests.append({"form": form, "authorization": self.headers.get("Authorization"),
                                          "content_type": self.headers.get("Content-Type")})
        client_id, client_secret = self._client_credentials(form)
        if client_id != server.client_id or client_secret != server.client_secret:
            self._send(401, {"error": "invalid_client"}, {"WWW-Authenticate": 'Basic realm="standin"'})
            return
        if form.get("grant_type") != "authorization_code":
            self._send(400, {"error": "unsupported_grant_type"})
            return
        with server.lock:
            grant = server.codes.pop(form.get("code") or "", None)  # single use, whatever follows
        if grant is None or grant.client_id != client_id:
            self._send(400, {"error": "invalid_grant", "error_description": "unknown or used code"})
            return
        if form.get("redirect_uri") != grant.redirect_uri:
            self._send(400, {"error": "invalid_grant", "error_description": "redirect_uri mismatch"})
            return
        verifier = form.get("code_verifier") or ""
        if not (43 <= len(verifier) <= 128) or s256(verifier) != grant.code_challenge:
            self._send(400, {"error": "invalid_grant", "error_description": "PKCE verification failed"})
            return
        self._send(200, {
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": grant.scope,
            "id_token": server.mint_id_token(grant),
        })

    def _client_credentials(self, form: dict[str, str]) -> tuple[str | None, str | None]:
        authorization = self.headers.get("Authorization") or ""
        if authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode()
            except ValueError:
                return None, None
            name, _, secret = decoded.partition(":")
            return unquote(name.replace("+", " ")), unquote(secret.replace("+", " "))
        return form.get("client_id"), form.get("client_secret")


def start(port: int = 0, *, client_id: str = "insightmesh-test",
          client_secret: str = "standin-client-secret") -> OidcStandin:
    """Start a stand-in on 127.0.0.1 (``port=0``: any free port) in a background thread."""
    return OidcStandin(port, client_id=client_id, client_secret=client_secret).start()
