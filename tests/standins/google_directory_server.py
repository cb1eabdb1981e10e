"""A stand-in for Google's Admin SDK Directory API v1 on loopback (stdlib ``ThreadingHTTPServer``, 127.0.0.1).

Start it in-process::

    server = GoogleDirectoryServer(port=0).start()    # server.url = "http://127.0.0.1:<port>"
    server.add_users([{"primaryEmail": "ada@corp.example", "name": "Ada Lovelace"}])
    server.add_group("eng@corp.example", name="Engineering", members=["ada@corp.example"])
    ...                                                # GOOGLE_DIRECTORY_API_URL = server.url
    server.stop()

or as a process: ``python -m tests.standins.google_directory_server --port 8766 --token T``.

Wire format (as Google documents it; JSON bodies, ``Authorization: Bearer <access token>``):

* ``GET /admin/directory/v1/users?customer=|domain=&maxResults=(1-500, default 100)&pageToken=
  &projection=basic|full&orderBy=email&sortOrder=ASCENDING|DESCENDING&fields=`` →
  ``{"kind": "admin#directory#users", "etag", "users": [...], "nextPageToken"?}`` (``users`` left
  out when there is none). A user: ``kind, id, etag, primaryEmail, name {givenName, familyName,
  fullName}, isAdmin, suspended, archived, customerId, orgUnitPath, creationTime, emails...``.
* ``GET /admin/directory/v1/groups?customer=|domain=&maxResults=(1-200, default 200)&pageToken=``
  → ``{"kind": "admin#directory#groups", "groups": [{kind, id, etag, email, name, description,
  directMembersCount, adminCreated}], "nextPageToken"?}``.
* ``GET /admin/directory/v1/groups/{groupKey}/members?maxResults=(1-200, default 200)&pageToken=
  &includeDerivedMembership=true|false`` (``groupKey``: the group's id or address) →
  ``{"kind": "admin#directory#members", "members": [{kind, etag, id, email, role, type
  (USER | GROUP | CUSTOMER), status}], "nextPageToken"?}``; derived membership expands nested groups
  (their users follow the direct members, each person once). Unknown group → 404 ``notFound``.
* ``customer`` is ``my_customer`` or the stand-in's customer id; ``domain`` one of the domains of
  its users and groups (else 400/404 as Google answers); neither → 400. Page tokens are opaque and
  bound to their listing (another listing's or a forged one → 400 ``invalid``). ``fields`` is
  honoured (partial response: ``a,b(c,d/e)``).
* Errors are Google's envelope ``{"error": {"code", "message", "errors": [{"message", "domain",
  "reason"}], "status"}}``: 401 ``authError`` / ``UNAUTHENTICATED`` (with ``WWW-Authenticate``)
  for a missing or refused token; 429 ``rateLimitExceeded`` with ``Retry-After``; 5xx
  ``backendError``.

Tokens: ``validator(token, scope) -> bool`` decides (a colleague's Google OAuth stand-in offers
``is_valid_access_token``); a call is authorised when the token is valid for one of the endpoint's
accepted scopes (``USERS_SCOPES`` / ``GROUPS_SCOPES`` / ``MEMBERS_SCOPES``). Without a validator
the stand-in accepts the tokens registered with ``tokens=`` / :meth:`add_token` for any scope.

Failure injection: ``fail_next("429" | "5xx" | "401", count=1, retry_after=1, status=503,
endpoint="users" | "groups" | "members" | "*")`` — the next ``count`` matching calls answer that
failure instead (after the token check passes). Every API call is recorded (:meth:`calls`:
method, endpoint, path, query, status, the token's SHA-256 prefix — never the token).
Control over HTTP (not Google): ``POST /_control/fail`` (the same fields), ``GET /_control/calls``,
``POST /_control/reset``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.standins.http import JsonHandler, StandinServer, serve_until_signalled

HOST = "127.0.0.1"
SCOPE_ROOT = "https://www.googleapis.com/auth/"
USERS_SCOPES = tuple(SCOPE_ROOT + s for s in ("admin.directory.user.readonly", "admin.directory.user"))
GROUPS_SCOPES = tuple(SCOPE_ROOT + s for s in ("admin.directory.group.readonly", "admin.directory.group"))
MEMBERS_SCOPES = (*tuple(SCOPE_ROOT + s for s in ("admin.directory.group.member.readonly",
                                                  "admin.directory.group.member")), *GROUPS_SCOPES)
FAIL_MODES = ("429", "5xx", "401")
PREFIX = "/admin/directory/v1/"
DEFAULT_TOKEN = "ya29.standin-directory-token"

Validator = Callable[[str, str], bool]


def _error(code: int, message: str, reason: str, status: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message,
                      "errors": [{"message": message, "domain": "global", "reason": reason}], "status": status}}


def _etag(value: Any) -> str:
    return '"' + hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:27] + '"'


# -- partial response ("fields") -----------------------------------------------------------------


def parse_fields(spec: str) -> dict[str, Any]:
    """``"a,b(c,d/e)"`` → ``{"a": {}, "b": {"c": {}, "d": {"e": {}}}}`` ({} selects everything below)."""
    tree: dict[str, Any] = {}
    position = 0

    def parse_list(target: dict[str, Any], closing: str | None) -> None:
        nonlocal position
        while position < len(spec):
            start = position
            while position < len(spec) and spec[position] not in ",()":
                position += 1
            path = [part.strip() for part in spec[start:position].split("/") if part.strip()]
            node = target
            for part in path:
                node = node.setdefault(part, {})
            if position < len(spec) and spec[position] == "(":
                position += 1
                parse_list(node, ")")
            if position < len(spec) and spec[position] == ",":
                position += 1
                continue
            if position < len(spec) and spec[position] == ")":
                if closing != ")":
                    raise ValueError("unbalanced ')' in fields")
                position += 1
                return
        if closing is not None:
            raise ValueError("unclosed '(' in fields")

    parse_list(tree, None)
    return tree


def select_fields(value: Any, tree: Mapping[str, Any]) -> Any:
    if not tree:
        return value
    if isinstance(value, list):
        return [select_fields(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    return {key: select_fields(value[key], sub) for key, sub in tree.items() if key in value}


# -- state ----------------------------------------------------------------------------------------


@dataclass
class FailRule:
    mode: str
    remaining: int
    endpoint: str = "*"
    retry_after: int | None = 1
    status: int = 503


class GoogleDirectoryServer(StandinServer):
    thread_name = "google-directory-standin"
    """The server and its directory (every method is thread-safe)."""

    def __init__(self, port: int = 0, *, tokens: Iterable[str] = (DEFAULT_TOKEN,),
                 validator: Validator | None = None, customer_id: str = "C0standin1") -> None:
        self.port = port
        self.customer_id = customer_id
        self.validator = validator
        self._tokens = set(tokens)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._users: dict[str, dict[str, Any]] = {}  # id -> user, insertion order
        self._groups: dict[str, dict[str, Any]] = {}  # id -> group
        self._members: dict[str, list[dict[str, str]]] = {}  # group id -> member specs
        self._domains: set[str] = set()
        self._failures: list[FailRule] = []
        self._calls: list[dict[str, Any]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def _new_server(self, port: int) -> _Server:
        return _Server(port, self)

    # -- tokens ----------------------------------------------------------------------------------

    def add_token(self, token: str) -> None:
        with self._lock:
            self._tokens.add(token)

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._tokens.discard(token)

    def authorised(self, token: str | None, scopes: Sequence[str]) -> bool:
        if not token:
            return False
        if self.validator is not None:
            return any(self.validator(token, scope) for scope in scopes)
        with self._lock:
            return token in self._tokens

    # -- the directory ---------------------------------------------------------------------------

    def _new_id(self, kind: str) -> str:
        number = next(self._ids)
        return f"1{number:020d}" if kind == "user" else f"0{number:014x}"

    def add_users(self, users: Iterable[Mapping[str, Any]]) -> list[str]:
        """Register people: ``{"primaryEmail" (or "email"), "name": "Full Name" | {...}, "suspended",
        "archived", "isAdmin", "id"}``; an address already registered is replaced in place."""
        ids = []
        with self._lock:
            by_email = {user["primaryEmail"]: user_id for user_id, user in self._users.items()}
            for given in users:
                email = str(given.get("primaryEmail") or given.get("email") or "").strip().lower()
                if "@" not in email:
                    raise ValueError(f"a user needs a primaryEmail, got {given!r}")
                user_id = str(given.get("id") or by_email.get(email) or self._new_id("user"))
                name = given.get("name")
                if not isinstance(name, Mapping):
                    full = str(name or email.partition("@")[0].replace(".", " ").title())
                    given_name, _, family = full.partition(" ")
                    name = {"givenName": given_name, "familyName": family, "fullName": full}
                user = {
                    "kind": "admin#directory#user", "id": user_id, "primaryEmail": email, "name": dict(name),
                    "isAdmin": bool(given.get("isAdmin", False)), "isDelegatedAdmin": False,
                    "lastLoginTime": "1970-01-01T00:00:00.000Z", "creationTime": "2024-01-02T03:04:05.000Z",
                    "agreedToTerms": True, "suspended": bool(given.get("suspended", False)),
                    "archived": bool(given.get("archived", False)), "changePasswordAtNextLogin": False,
                    "ipWhitelisted": False, "emails": [{"address": email, "primary": True}],
                    "customerId": self.customer_id, "orgUnitPath": "/", "isMailboxSetup": True,
                    "includeInGlobalAddressList": True,
                }
                user["etag"] = _etag(user)
                self._users[user_id] = user
                self._domains.add(email.partition("@")[2])
                ids.append(user_id)
        return ids

    def update_user(self, key: str, **changes: Any) -> None:
        """Change a user (by id or address): ``suspended=True``, ``name=...``, ``archived=...``."""
        with self._lock:
            user = self._user(key)
            for name, value in changes.items():
                user[name] = value if name != "name" or isinstance(value, Mapping) else \
                    {**user["name"], "fullName": str(value)}
            user["etag"] = _etag({k: v for k, v in user.items() if k != "etag"})

    def remove_user(self, key: str) -> None:
        with self._lock:
            del self._users[self._user(key)["id"]]

    def _user(self, key: str) -> dict[str, Any]:
        for user in self._users.values():
            if user["id"] == key or user["primaryEmail"] == key.lower():
                return user
        raise KeyError(f"no user {key!r}")

    def add_group(self, email: str, *, name: str | None = None, description: str = "",
                  members: Iterable[str | Mapping[str, str]] = (), group_id: str | None = None) -> str:
        """Register a group; ``members``: addresses (a user's, a group's or an outsider's) or
        ``{"email"|"id", "type", "role"}`` (``{"type": "CUSTOMER"}``: everyone in the customer)."""
        email = email.strip().lower()
        with self._lock:
            existing = next((gid for gid, group in self._groups.items() if group["email"] == email), None)
            gid = group_id or existing or self._new_id("group")
            self._groups[gid] = {"kind": "admin#directory#group", "id": gid, "email": email,
                                 "name": name or email.partition("@")[0], "description": description,
                                 "adminCreated": True}
            self._domains.add(email.partition("@")[2])
            self._members[gid] = [self._member_spec(member) for member in members]
        return gid

    def set_members(self, group_key: str, members: Iterable[str | Mapping[str, str]]) -> None:
        with self._lock:
            self._members[self._group(group_key)["id"]] = [self._member_spec(member) for member in members]

    def remove_group(self, group_key: str) -> None:
        with self._lock:
            gid = self._group(group_key)["id"]
            del self._groups[gid]
            self._members.pop(gid, None)

    @staticmethod
    def _member_spec(member: str | Mapping[str, str]) -> dict[str, str]:
        if isinstance(member, str):
            return {"email": member.strip().lower(), "role": "MEMBER"}
        return {"role": "MEMBER", **{key: str(value) for key, value in member.items()}}

    def _group(self, key: str) -> dict[str, Any]:
        key = unquote(key)
        group = self._groups.get(key) or next((g for g in self._groups.values() if g["email"] == key.lower()), None)
        if group is None:
            raise KeyError(key)
        return group

    # -- failures and calls ----------------------------------------------------------------------

    def fail_next(self, mode: str, count: int = 1, *, retry_after: int | None = 1, status: int = 503,
                  endpoint: str = "*") -> None:
        if mode not in FAIL_MODES or count < 1 or endpoint not in ("*", "users", "groups", "members"):
            raise ValueError(f"mode one of {FAIL_MODES}, count >= 1, endpoint users|groups|members|*")
        if mode == "5xx" and not 500 <= status <= 599:
            raise ValueError("status must be 5xx")
        with self._lock:
            self._failures.append(FailRule(mode, count, endpoint, retry_after, status))

    def _take_failure(self, endpoint: str) -> FailRule | None:
        with self._lock:
            for rule in self._failures:
                if rule.endpoint in ("*", endpoint):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._failures.remove(rule)
                    return rule
        return None

    def calls(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(call) for call in self._calls if endpoint is None or call["endpoint"] == endpoint]

    def reset(self) -> None:
        """Forget calls and pending failures (the directory stays)."""
        with self._lock:
            self._calls.clear()
            self._failures.clear()

    # -- requests --------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str],
               authorization: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        token = authorization[7:].strip() if authorization and authorization[:7].lower() == "bearer " else None
        endpoint, scopes, group_key = self._route(path)
        if endpoint is None:
            reply: tuple[int, dict[str, Any], dict[str, str]] = (
                404, _error(404, "Not Found", "notFound", "NOT_FOUND"), {})
        elif method != "GET":
            reply = (405, _error(405, "Method not allowed", "httpMethodNotAllowed", "METHOD_NOT_ALLOWED"), {})
        elif not self.authorised(token, scopes):
            message = ("Request is missing required authentication credential." if not token else
                       "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                       "cookie or other valid authentication credential.")
            reply = (401, _error(401, message, "authError", "UNAUTHENTICATED"),
                     {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        else:
            reply = self._failure(endpoint) or self._answer(endpoint, group_key, query)
        with self._lock:
            self._calls.append({"at": time.time(), "method": method, "endpoint": endpoint, "path": path,
                                "query": dict(query), "status": reply[0],
                                "token_sha256": hashlib.sha256(token.encode()).hexdigest()[:12] if token else None})
        return reply

    @staticmethod
    def _route(path: str) -> tuple[str | None, tuple[str, ...], str | None]:
        if not path.startswith(PREFIX):
            return None, (), None
        parts = path[len(PREFIX):].split("/")
        if parts == ["users"]:
            return "users", USERS_SCOPES, None
        if parts == ["groups"]:
            return "groups", GROUPS_SCOPES, None
        if len(parts) == 3 and parts[0] == "groups" and parts[2] == "members" and parts[1]:
            return "members", MEMBERS_SCOPES, parts[1]
        return None, (), None

    def _failure(self, endpoint: str) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        rule = self._take_failure(endpoint)
        if rule is None:
            return None
        if rule.mode == "429":
            headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
            return 429, _error(429, "Rate Limit Exceeded", "rateLimitExceeded", "RESOURCE_EXHAUSTED"), headers
        if rule.mode == "401":
            return (401, _error(401, "Request had invalid authentication credentials.", "authError",
                                "UNAUTHENTICATED"), {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        return rule.status, _error(rule.status, "Backend Error", "backendError", "UNAVAILABLE"), {}

    def _answer(self, endpoint: str, group_key: str | None,
                query: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        limit = 100 if endpoint == "users" else 200
        try:
            size = int(query.get("maxResults") or limit)
            fields = parse_fields(query["fields"]) if query.get("fields") else {}
        except ValueError:
            return 400, _error(400, "Invalid Input", "invalid", "INVALID_ARGUMENT"), {}
        if not 1 <= size <= (500 if endpoint == "users" else 200):
            return 400, _error(400, "Invalid Input: maxResults", "invalid", "INVALID_ARGUMENT"), {}
        with self._lock:
            if endpoint == "members":
                assert group_key is not None
                try:
                    group = self._group(group_key)
                except KeyError:
                    return 404, _error(404, "Resource Not Found: groupKey", "notFound", "NOT_FOUND"), {}
                listing_key = f"members:{group['id']}:{query.get('includeDerivedMembership', 'false')}"
                items = self._member_items(group["id"], derived=query.get("includeDerivedMembership") == "true")
            else:
                customer, domain = query.get("customer"), (query.get("domain") or "").lower() or None
                if not customer and not domain:
                    return 400, _error(400, "Bad Request", "badRequest", "INVALID_ARGUMENT"), {}
                if customer and customer not in ("my_customer", self.customer_id):
                    return 400, _error(400, "Bad Request", "badRequest", "INVALID_ARGUMENT"), {}
                if domain and domain not in self._domains:
                    return 400, _error(400, "Domain not found.", "notFound", "INVALID_ARGUMENT"), {}
                source = self._users if endpoint == "users" else self._groups
                key = "primaryEmail" if endpoint == "users" else "email"
                items = [dict(item) for item in source.values()
                         if domain is None or item[key].partition("@")[2] == domain]
                if endpoint == "groups":
                    for item in items:
                        item["directMembersCount"] = str(len(self._members.get(item["id"], [])))
                if query.get("orderBy") == "email":
                    items.sort(key=lambda item: item[key], reverse=query.get("sortOrder") == "DESCENDING")
                listing_key = f"{endpoint}:{customer}:{domain}:{query.get('orderBy')}:{query.get('sortOrder')}"
            for item in items:
                item.setdefault("etag", _etag(item))
        offset = 0
        if query.get("pageToken"):
            offset = self._offset(query["pageToken"], listing_key)
            if offset < 0:
                return 400, _error(400, "Invalid Input: pageToken", "invalid", "INVALID_ARGUMENT"), {}
        page = items[offset:offset + size]
        body: dict[str, Any] = {"kind": f"admin#directory#{endpoint}", "etag": _etag([i.get("id") for i in page])}
        if page:
            body[endpoint] = page
        if offset + size < len(items):
            body["nextPageToken"] = self._token(offset + size, listing_key)
        return 200, select_fields(body, fields), {}

    def _member_items(self, gid: str, *, derived: bool) -> list[dict[str, Any]]:
        """A group's members as Google lists them (lock held); derived: nested groups' users after."""
        by_email = {user["primaryEmail"]: user for user in self._users.values()}
        groups_by_email = {group["email"]: group for group in self._groups.values()}
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        pending = [(gid, True)]
        visited: set[str] = set()
        while pending:
            current, direct = pending.pop(0)
            if current in visited:
                continue
            visited.add(current)
            for spec in self._members.get(current, []):
                item = self._member_item(spec, by_email, groups_by_email)
                if item["type"] == "GROUP" and derived:
                    pending.append((item["id"], False))
                if item["id"] in seen or (not direct and item["type"] != "USER"):
                    continue
                seen.add(item["id"])
                items.append(item)
            if not derived:
                break
        return items

    def _member_item(self, spec: Mapping[str, str], users: Mapping[str, dict[str, Any]],
                     groups: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        role = spec.get("role", "MEMBER")
        if spec.get("type") == "CUSTOMER":
            return {"kind": "admin#directory#member", "id": self.customer_id, "role": role, "type": "CUSTOMER",
                    "status": "ACTIVE"}
        email = spec.get("email", "")
        user, group = users.get(email), groups.get(email)
        if user is not None:
            return {"kind": "admin#directory#member", "id": user["id"], "email": email, "role": role,
                    "type": "USER", "status": "SUSPENDED" if user["suspended"] else "ACTIVE"}
        if group is not None:
            return {"kind": "admin#directory#member", "id": group["id"], "email": email, "role": role,
                    "type": "GROUP", "status": "ACTIVE"}
        outsider = spec.get("id") or "9" + str(int(hashlib.sha256(email.encode()).hexdigest()[:16], 16))[:20]
        return {"kind": "admin#directory#member", "id": outsider, "email": email, "role": role,
                "type": spec.get("type", "USER"), "status": "ACTIVE"}

    @staticmethod
    def _token(offset: int, listing_key: str) -> str:
        raw = json.dumps({"o": offset, "k": hashlib.sha256(listing_key.encode()).hexdigest()[:16]})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @staticmethod
    def _offset(token: str, listing_key: str) -> int:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            offset = int(decoded["o"])
            if decoded["k"] != hashlib.sha256(listing_key.encode()).hexdigest()[:16] or offset < 0:
                return -1
            return offset
        except (ValueError, KeyError, TypeError):
            return -1


# -- HTTP -----------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, directory: GoogleDirectoryServer) -> None:
        self.directory = directory
        super().__init__((HOST, port), _Handler)


class _Handler(JsonHandler):
    server: _Server
    server_version = "GoogleDirectoryStandin/1.0"
    json_content_type = "application/json; charset=UTF-8"

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, verb: str) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        raw = self._read_body()
        directory = self.server.directory
        if url.path.startswith("/_control/"):
            status, body = self._control(verb, url.path[len("/_control/"):], raw)
            headers: dict[str, str] = {}
        else:
            status, body, headers = directory.handle(verb, url.path, query, self.headers.get("Authorization"))
        self._send(status, body, headers)

    def _control(self, verb: str, name: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        directory = self.server.directory
        try:
            body = json.loads(raw) if raw.strip() else {}
            if name == "fail" and verb == "POST":
                directory.fail_next(str(body.get("mode")), int(body.get("count", 1)),
                                    retry_after=body.get("retry_after", 1), status=int(body.get("status", 503)),
                                    endpoint=str(body.get("endpoint", "*")))
                return 200, {"ok": True}
            if name == "calls" and verb == "GET":
                return 200, {"calls": directory.calls()}
            if name == "reset" and verb == "POST":
                directory.reset()
                return 200, {"ok": True}
            if name == "users" and verb == "POST":
                return 200, {"ids": directory.add_users(body.get("users") or [])}
        except (ValueError, TypeError, AttributeError) as error:
            return 400, {"error": str(error)}
        return 404, {"error": "not found"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.standins.google_directory_server",
                                     description="Admin SDK Directory API v1 stand-in on 127.0.0.1 (NOT Google).")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--token", action="append", default=[], help="an accepted access token (repeatable)")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this long (bounded)")
    args = parser.parse_args(argv)
    server = GoogleDirectoryServer(port=args.port, tokens=args.token or [DEFAULT_TOKEN]).start()
    print(f"google directory stand-in listening on {server.url}", flush=True)
    serve_until_signalled(server, args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
