"""Google credentials: connect, list, show, delete — and access tokens for job types.

Connect (two steps, the browser in between):

1. :func:`start_google_authorization` — an active admin asks for a credential ``name`` and
   ``scopes``: a ``state`` (32 random bytes) and a PKCE verifier are stored for ten minutes,
   bound to the admin, with the id the credential will get (one transaction with the audit entry
   ``credential.authorize``); the answer is Google's consent URL and a short-lived signed cookie
   (``im_connect``, HttpOnly, path the callback's, ten minutes) naming the state, which binds the
   flow to the browser that started it — as sign-in's ``im_login`` cookie does.
2. :func:`complete_google_authorization` — Google's redirect: a callback whose browser holds no
   ``im_connect`` cookie for its state is refused before any table is touched (so a consent link
   or a code lured into another browser cannot connect anything); then the state is consumed (one
   conditional ``DeleteItem``: a replay, or a race of two callbacks, finds nothing), then refused
   if it expired, if the browser's session belongs to another user, or if its admin is no longer
   an active admin; then Google's answer (``error`` = consent denied) is checked, the code
   exchanged (with the verifier), the tokens sealed (:mod:`~insightmesh.credentials.crypto`) and
   the credential stored in one transaction with its audit entry ``credential.create``. Any refusal
   stores nothing.

:func:`google_access_token` is what a job type calls: it returns a valid access token, refreshing
it when it expires within five minutes (and storing the new tokens, re-sealed, with a condition on
``version``: of two concurrent refreshers one stores, the other reads and uses what was stored).
:func:`delete_credential` revokes the grant at Google, then deletes the credential (with its
audit entry) — even when Google cannot be reached, which it reports as ``revoked: false``.

No function here returns, logs or audits token material: summaries are :class:`CredentialSummary`.
"""

from __future__ import annotations

import hmac
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import ValidationError
from pynamodb.exceptions import DeleteError, UpdateError

from insightmesh.api.errors import ConflictError, ForbiddenError, ValidationFailedError
from insightmesh.api.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, key_cursor, query_page, start_key
from insightmesh.audit import log as audit_log
from insightmesh.audit.tx import Tx
from insightmesh.auth.principal import Principal
from insightmesh.auth.sessions import cookie_values, set_cookie, sign, unsign
from insightmesh.clock import utc_now
from insightmesh.credentials import google
from insightmesh.credentials.crypto import SealBrokenError, Sealed, seal, unseal
from insightmesh.credentials.errors import (
    AuthorizationRefusedError,
    AuthorizationStateError,
    CredentialError,
    CredentialExpiredError,
    CredentialNotFoundError,
    CredentialScopeError,
    CredentialUnavailableError,
    GoogleNotConfiguredError,
)
from insightmesh.credentials.models import (
    CREDENTIAL_KIND,
    GOOGLE_PROVIDER,
    REFRESH_REFUSED,
    Credential,
    CredentialState,
    created_sort_key,
    state_key,
)
from insightmesh.credentials.schemas import (
    ALLOWED_SCOPES,
    CredentialDeleted,
    CredentialSummary,
    GoogleAuthorizeIn,
    expand_scope,
)
from insightmesh.directory.models import User
from insightmesh.observability import get_logger

STATE_TTL: Final = timedelta(minutes=10)
CONNECT_COOKIE: Final = "im_connect"
CONNECT_PURPOSE: Final = "insightmesh/credential-connect/v1"
REFRESH_MARGIN: Final = timedelta(minutes=5)
LAST_USED_RESOLUTION: Final = timedelta(minutes=1)  # last_used_at is written at most once a minute
MAX_STATE_LENGTH: Final = 512
MAX_CODE_LENGTH: Final = 2048
CREDENTIAL_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
LIST_SCOPE: Final = "credentials|by-kind"
_CREDENTIAL_ID: Final = re.compile(CREDENTIAL_ID_PATTERN)
_OAUTH_ERROR_CODE: Final = re.compile(r"^[a-z_]{1,64}$")


@dataclass(frozen=True)
class AuthorizationStart:
    """The start of a connect flow: where to send the admin's browser, and until when."""

    credential_id: str  # the id the credential will have once connected
    authorization_url: str
    state_expires_at: datetime
    binding_cookie: str  # Set-Cookie of the im_connect cookie that binds the flow to this browser


def target(credential_id: str) -> str:
    """The audit target of a credential."""
    return f"credential:{credential_id}"


def summary(credential: Credential, *, now: datetime | None = None) -> CredentialSummary:
    """What may be shown of ``credential``: no token material."""
    status, reason = credential.status(now)
    return CredentialSummary(
        id=credential.credential_id, name=credential.name, provider="google", scopes=list(credential.scopes),
        status=status, status_reason=reason, created_by=credential.created_by, created_at=credential.created_at,
        last_used_at=credential.last_used_at, last_refreshed_at=credential.last_refreshed_at,
        access_expires_at=credential.token_expires_at, refreshable=bool(credential.refreshable))


def _sealed(credential: Credential) -> Sealed:
    return Sealed(key_id=credential.key_id, encrypted_data_key=credential.encrypted_data_key,
                  nonce=credential.nonce, ciphertext=credential.ciphertext)


def _require(credential_id: str, *, consistent: bool = False) -> Credential:
    if not isinstance(credential_id, str) or not _CREDENTIAL_ID.match(credential_id):
        raise CredentialNotFoundError("no such credential")
    try:
        return Credential.get(credential_id, consistent_read=consistent)
    except Credential.DoesNotExist:
        raise CredentialNotFoundError(f"no credential with id {credential_id!r}") from None


def _active_admin(user_id: str) -> User | None:
    try:
        user = User.get(user_id, consistent_read=True)
    except User.DoesNotExist:
        return None
    return user if user.is_active and user.is_admin else None


def _principal(user: User) -> Principal:
    """The admin a callback acts for (it carries no bearer token: the state is the binding)."""
    return Principal(user_id=user.user_id, email=user.email, is_admin=True, via="session")


# -- connect ----------------------------------------------------------------------------------


def _validated(name: str, scopes: Iterable[str]) -> GoogleAuthorizeIn:
    try:
        return GoogleAuthorizeIn(name=name, scopes=list(scopes))
    except ValidationError as error:
        details = [{"loc": ["body", *(str(part) for part in problem["loc"])], "msg": str(problem["msg"]),
                    "type": str(problem["type"])} for problem in error.errors()]
        raise ValidationFailedError("the credential name or scopes are not valid", details=details) from None


def start_google_authorization(user_id: str, name: str, scopes: Iterable[str], *, actor: Principal | None = None,
                               request_id: str = "-") -> AuthorizationStart:
    """Start connecting a Google credential for admin ``user_id`` (see the module doc).

    Raises ValidationFailedError (422) for a bad name or scope, ForbiddenError (403) when
    ``user_id`` is not an active admin, GoogleNotConfiguredError (503). With ``actor`` the start
    is audited (``credential.authorize``) in the same transaction as the state.
    """
    request = _validated(name, scopes)
    client = google.configured_client()
    if _active_admin(user_id) is None:
        raise ForbiddenError("only an active admin may connect credentials")
    state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    credential_id = str(uuid.uuid4())
    now = utc_now()
    expires_at = now + STATE_TTL
    url = google.authorization_url(client, state=state, code_verifier=verifier, scopes=request.scopes)
    item = CredentialState(state_key(state), credential_id=credential_id, user_id=user_id, name=request.name,
                           scopes=list(request.scopes), code_verifier=verifier, created_at=now, expires_at=expires_at)
    tx = Tx()
    tx.put(item, condition=CredentialState.state.does_not_exist(),
           error=ConflictError("could not start the connection; retry"))
    if actor is not None:
        tx.audit(audit_log.entry(actor=actor, action="credential.authorize", target=target(credential_id),
                                 after={"name": request.name, "provider": GOOGLE_PROVIDER, "scopes": request.scopes,
                                        "state_expires_at": expires_at.isoformat()},
                                 request_id=request_id))
    tx.commit()
    get_logger().info("credential connection started", extra={"target": target(credential_id), "user_id": user_id})
    return AuthorizationStart(credential_id=credential_id, authorization_url=url, state_expires_at=expires_at,
                              binding_cookie=_binding_cookie(state, expires_at))


def _binding_cookie(state: str, expires_at: datetime) -> str:
    value = sign({"state": state, "exp": int(expires_at.timestamp())}, purpose=CONNECT_PURPOSE)
    return set_cookie(CONNECT_COOKIE, value, max_age=int(STATE_TTL.total_seconds()), path=google.CALLBACK_PATH)


def clear_binding_cookie() -> str:
    """A Set-Cookie value that deletes the im_connect cookie (the callback answers it either way)."""
    return set_cookie(CONNECT_COOKIE, "", max_age=0, path=google.CALLBACK_PATH)


def _bound_to_this_browser(state: str, cookie_header: str | None) -> bool:
    """Whether the browser holds a valid im_connect cookie naming ``state``."""
    for value in cookie_values(cookie_header, CONNECT_COOKIE):
        claims = unsign(value, purpose=CONNECT_PURPOSE)
        bound = claims.get("state") if claims is not None else None
        if isinstance(bound, str) and hmac.compare_digest(bound.encode(), state.encode()):
            return True
    return False


def _consume_state(state: str) -> CredentialState:
    """Delete the state if it exists and return what was stored — at most once per state."""
    try:
        response = CredentialState._get_connection().delete_item(
            state_key(state), condition=CredentialState.state.exists(), return_values="ALL_OLD")
    except DeleteError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            raise AuthorizationStateError("this connection is unknown, already completed or expired; "
                                          "start it again") from None
        raise
    return CredentialState.from_raw_data(response["Attributes"])


def _oauth_error_code(value: str) -> str:
    return value if _OAUTH_ERROR_CODE.match(value) else "invalid"


def complete_google_authorization(state: str | None, code: str | None, error: str | None, *,
                                  session_user_id: str | None, cookie_header: str | None,
                                  request_id: str = "-") -> CredentialSummary:
    """Finish a connect flow from Google's redirect (see the module doc) and store the credential.

    ``session_user_id``: the user of the browser's session cookie, if it carries a valid one;
    ``cookie_header``: the browser's cookies, which must hold the flow's ``im_connect`` cookie.
    Raises AuthorizationStateError (400) for a missing, unknown, replayed or expired state, one
    this browser did not start, or one started by another user than the session's or by a user
    who is no longer an active admin;
    AuthorizationRefusedError (400) when Google denied consent or refused the code;
    GoogleNotConfiguredError / CredentialUnavailableError (503). Nothing is stored then.
    """
    if not state or len(state) > MAX_STATE_LENGTH:
        raise AuthorizationStateError("the callback carries no valid state; start the connection again")
    if not _bound_to_this_browser(state, cookie_header):
        get_logger().warning("credential connection refused: not started in this browser")
        raise AuthorizationStateError("this connection was not started in this browser, or it expired; start it "
                                      "again from the browser you will consent in")
    stored = _consume_state(state)
    log = get_logger()
    where = {"target": target(stored.credential_id), "user_id": stored.user_id}
    if stored.expires_at <= utc_now():
        log.info("credential connection refused: state expired", extra=where)
        raise AuthorizationStateError("this connection expired (10 minutes); start it again")
    if session_user_id is not None and session_user_id != stored.user_id:
        log.warning("credential connection refused: started by another user than the session's",
                    extra={**where, "session_user_id": session_user_id})
        raise AuthorizationStateError("this connection was started by another user; start it again yourself")
    admin = _active_admin(stored.user_id)
    if admin is None:
        log.warning("credential connection refused: its admin is no longer an active admin", extra=where)
        raise AuthorizationStateError("the user who started this connection is no longer an active admin")
    if error:
        log.info("credential connection refused by Google", extra={**where, "oauth_error": _oauth_error_code(error)})
        raise AuthorizationRefusedError(f"Google did not authorize the connection ({_oauth_error_code(error)})")
    if not code or len(code) > MAX_CODE_LENGTH:
        raise AuthorizationStateError("the callback carries no authorization code; start the connection again")
    client = google.configured_client()
    tokens = google.exchange_code(client, code=code, code_verifier=stored.code_verifier, requested=stored.scopes)
    try:
        return _store_new(stored, admin, tokens, request_id=request_id)
    except Exception:
        # Not stored (KMS or DynamoDB failed): give the grant back rather than leave it dangling.
        google.revoke(client, token=tokens.refresh_token or tokens.access_token)
        raise


def _store_new(stored: CredentialState, admin: User, tokens: google.TokenSet, *, request_id: str) -> CredentialSummary:
    granted = sorted(set(tokens.scopes) & ALLOWED_SCOPES)
    if not set(granted) & set(stored.scopes):
        raise AuthorizationRefusedError("Google granted none of the requested scopes; nothing was stored")
    now = utc_now()
    credential_id = stored.credential_id
    sealed = seal(credential_id, tokens.payload())
    credential = Credential(
        credential_id, kind=CREDENTIAL_KIND, created_sort=created_sort_key(now, credential_id), name=stored.name,
        provider=GOOGLE_PROVIDER, scopes=granted, created_by=admin.user_id, created_at=now,
        token_expires_at=tokens.expires_at, refreshable=bool(tokens.refresh_token), key_id=sealed.key_id,
        encrypted_data_key=sealed.encrypted_data_key, nonce=sealed.nonce, ciphertext=sealed.ciphertext)
    result = summary(credential, now=now)
    tx = Tx()
    tx.put(credential, condition=Credential.credential_id.does_not_exist(),
           error=ConflictError("this credential already exists"))
    tx.audit(audit_log.entry(actor=_principal(admin), action="credential.create", target=target(credential_id),
                             after=result.model_dump(mode="json"), request_id=request_id))
    tx.commit()
    get_logger().info("credential connected", extra={"target": target(credential_id), "user_id": admin.user_id,
                                                     "refreshable": result.refreshable})
    return result


# -- read -------------------------------------------------------------------------------------


def list_credentials(limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> Page[CredentialSummary]:
    """Credentials, newest first: one ``Query by-kind`` per page."""
    if not 1 <= limit <= MAX_LIMIT:
        message = f"limit must be between 1 and {MAX_LIMIT}"
        raise ValidationFailedError(message, details=[{"loc": ["query", "limit"], "msg": message,
                                                       "type": "value_error"}])
    results = Credential.by_kind.query(CREDENTIAL_KIND, scan_index_forward=False, limit=limit,
                                       last_evaluated_key=start_key(cursor, scope=LIST_SCOPE))
    found, last_key = query_page(results, Credential)
    now = utc_now()
    return Page[CredentialSummary](items=[summary(credential, now=now) for credential in found],
                                   next_cursor=key_cursor(last_key, scope=LIST_SCOPE))


def get_credential_summary(credential_id: str) -> CredentialSummary:
    """One credential (CredentialNotFoundError, 404, if there is none)."""
    return summary(_require(credential_id))


# -- delete -----------------------------------------------------------------------------------


def _revoke(credential: Credential) -> bool:
    """Revoke the credential's grant at Google; False when that could not be done."""
    where = {"target": target(credential.credential_id)}
    try:
        payload = unseal(credential.credential_id, _sealed(credential))
    except SealBrokenError:
        get_logger().warning("credential tokens unreadable; deleted without revoking", extra=where)
        return False
    token = payload.get("refresh_token") or payload.get("access_token")
    if not isinstance(token, str) or not token:
        return False
    try:
        client = google.configured_client(need_secret=False)
    except GoogleNotConfiguredError as error:
        get_logger().warning("google not configured; deleted without revoking", extra={**where, "error": str(error)})
        return False
    revoked = google.revoke(client, token=token)
    if not revoked:
        get_logger().warning("credential not revoked at Google; deleting it anyway", extra=where)
    return revoked


def delete_credential(credential_id: str, *, actor: Principal | None = None,
                      request_id: str = "-") -> CredentialDeleted:
    """Revoke at Google, then delete (with the audit entry ``credential.delete`` when ``actor``)."""
    credential = _require(credential_id, consistent=True)
    before = summary(credential)
    revoked = _revoke(credential)
    tx = Tx()
    tx.delete(credential, condition=Credential.credential_id.exists(),
              error=CredentialNotFoundError(f"no credential with id {credential_id!r}"), add_version_condition=False)
    if actor is not None:
        tx.audit(audit_log.entry(actor=actor, action="credential.delete", target=target(credential_id),
                                 before=before.model_dump(mode="json"), after={"revoked": revoked},
                                 request_id=request_id))
    tx.commit()
    get_logger().info("credential deleted", extra={"target": target(credential_id), "revoked": revoked})
    return CredentialDeleted(**before.model_dump(), revoked=revoked)


# -- access tokens for jobs -------------------------------------------------------------------


def _touch(credential: Credential, now: datetime) -> None:
    """Record the use (at most once a minute; leaves ``version`` alone). Best effort."""
    if credential.last_used_at is not None and now - credential.last_used_at < LAST_USED_RESOLUTION:
        return
    try:
        Credential._get_connection().update_item(
            credential.credential_id, actions=[Credential.last_used_at.set(now)],
            condition=Credential.credential_id.exists())
    except UpdateError as error:
        get_logger().warning("could not record the credential's use",
                             extra={"target": target(credential.credential_id),
                                    "error_code": error.cause_response_code})


def _store_refreshed(credential: Credential, tokens: google.TokenSet, now: datetime) -> bool:
    """Store refreshed tokens unless the credential changed since it was read (False then)."""
    sealed = seal(credential.credential_id, tokens.payload())
    actions: list[Any] = [
        Credential.token_expires_at.set(tokens.expires_at),
        Credential.refreshable.set(bool(tokens.refresh_token)),
        Credential.last_refreshed_at.set(now),
        Credential.last_used_at.set(now),
        Credential.key_id.set(sealed.key_id),
        Credential.encrypted_data_key.set(sealed.encrypted_data_key),
        Credential.nonce.set(sealed.nonce),
        Credential.ciphertext.set(sealed.ciphertext),
    ]
    try:
        credential.update(actions=actions)  # conditional on the version read; increments it
    except UpdateError as error:
        if error.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


def _mark_expired(credential: Credential) -> None:
    try:
        credential.update(actions=[Credential.status_reason.set(REFRESH_REFUSED)])
    except UpdateError as error:
        if error.cause_response_code != "ConditionalCheckFailedException":
            raise
    get_logger().warning("credential expired: Google refused to refresh it",
                         extra={"target": target(credential.credential_id)})


def _required(scopes: Iterable[str]) -> set[str]:
    try:
        return {expand_scope(scope) for scope in scopes}
    except ValueError as error:
        raise CredentialScopeError(str(error)) from None


def google_access_token(credential_id: str, *, required_scopes: Iterable[str] = ()) -> str:
    """A valid Google access token of credential ``credential_id`` for a job.

    ``required_scopes`` (URLs or aliases) must all have been granted. Refreshes the token when it
    expires within five minutes and stores the new one (see the module doc). Raises (all
    :class:`CredentialError`): CredentialNotFoundError, CredentialScopeError, CredentialExpiredError
    (revoked at Google or refresh refused — the credential is marked expired —, or no refresh token
    and the access token expired), CredentialUnavailableError / GoogleNotConfiguredError (retry later).
    """
    required = _required(required_scopes)
    for _ in range(3):
        credential = _require(credential_id, consistent=True)
        if credential.status_reason:
            raise CredentialExpiredError(f"the credential {credential.name!r} has expired "
                                         f"({credential.status_reason}); connect it again")
        missing = sorted(required - set(credential.scopes))
        if missing:
            raise CredentialScopeError(f"the credential {credential.name!r} was not granted "
                                       + ", ".join(missing) + "; connect it again with those scopes")
        payload = unseal(credential.credential_id, _sealed(credential))
        access_token, refresh_token = payload.get("access_token"), payload.get("refresh_token")
        now = utc_now()
        expires_at = credential.token_expires_at
        valid = isinstance(access_token, str) and bool(access_token) and expires_at is not None
        if valid and expires_at is not None and expires_at - now > REFRESH_MARGIN:
            _touch(credential, now)
            return str(access_token)
        if not isinstance(refresh_token, str) or not refresh_token:
            if valid and expires_at is not None and expires_at > now:
                _touch(credential, now)
                return str(access_token)
            raise CredentialExpiredError(f"the credential {credential.name!r} has expired and has no refresh "
                                         "token; connect it again")
        client = google.configured_client()
        try:
            tokens = google.refresh(client, refresh_token=refresh_token, scopes=credential.scopes)
        except CredentialExpiredError:
            _mark_expired(credential)
            raise
        if _store_refreshed(credential, tokens, now):
            get_logger().info("credential refreshed", extra={"target": target(credential_id)})
            return tokens.access_token
        # Another refresher stored first: read again and use what it stored.
    raise CredentialUnavailableError("the credential keeps changing; try again shortly")


__all__ = [
    "AuthorizationStart",
    "CredentialError",
    "complete_google_authorization",
    "delete_credential",
    "get_credential_summary",
    "google_access_token",
    "list_credentials",
    "start_google_authorization",
    "summary",
    "target",
]
