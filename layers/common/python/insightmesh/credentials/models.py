"""The credential tables. Deployed tables: ``infra/template.yaml`` (``CredentialsTable``,
``CredentialStatesTable``).

``CREDENTIALS_TABLE`` — :class:`Credential`, hash ``credential_id``; GSI ``by-kind`` (hash
``kind``, range ``created_sort``, ALL); no TTL.

* ``PutItem`` with ``attribute_not_exists(credential_id)``: store a connected credential (in one
  transaction with its audit entry).
* ``GetItem(credential_id)``: show one; a job obtaining an access token (consistent read).
* ``Query by-kind(kind = "credential")``, newest first: the list (paginated). Every item has
  ``kind = "credential"`` and ``created_sort = "<created_at ISO>#<credential_id>"``, so the index
  holds every credential in creation order and listing never scans.
* ``UpdateItem`` conditional on ``version``: store refreshed tokens (re-encrypted) or mark the
  credential expired — two concurrent refreshers cannot clobber each other. ``last_used_at`` is
  set by an ``UpdateItem`` that leaves ``version`` alone (it is not a change of the secret).
* ``DeleteItem`` (with its audit entry, in one transaction): delete, after revoking at Google.

The tokens are never stored in clear: ``ciphertext`` is the AES-256-GCM encryption of their JSON
with a data key that KMS generated for this credential; only that data key *encrypted by KMS*
(``encrypted_data_key``) is stored, with ``nonce`` and the KMS ``key_id`` (see
:mod:`insightmesh.credentials.crypto`). Everything else on the item is not secret.

``CREDENTIAL_STATES_TABLE`` — :class:`CredentialState`, hash ``state``; TTL ``expires_at``.

* ``PutItem`` with ``attribute_not_exists(state)``: an admin starts the connect flow. The item
  holds the SHA-256 of the ``state`` sent to Google (not the value itself), the admin's user id,
  the requested name and scopes, the PKCE ``code_verifier`` and the credential id to create.
* ``DeleteItem(state)`` with ``attribute_exists(state)``, ``ReturnValues ALL_OLD``: the callback
  consumes it — exactly once, even under a race. ``expires_at`` (10 minutes) is checked in code
  too: TTL deletion is lazy (and never happens in moto).

Status (:meth:`Credential.status`):

* ``expired`` — Google refused to refresh it (``invalid_grant``: revoked by the user or an
  admin, or the grant expired; ``status_reason = "refresh_refused"``), or it has no refresh token
  and its access token has expired (``"access_token_expired"``);
* ``expiring`` — no refresh token and the access token expires within an hour (``"no_refresh_token"``);
* ``active`` — otherwise: with a refresh token the access token is renewed when needed.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Final

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    ListAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from insightmesh.aws import model_meta
from insightmesh.clock import utc_now
from insightmesh.credentials.schemas import Status

CREDENTIAL_KIND: Final = "credential"  # Credential.kind of every credential: the by-kind hash key
GOOGLE_PROVIDER: Final = "google"
ENVELOPE_SCHEME: Final = "kms-aes-256-gcm/v1"
EXPIRING_WITHIN: Final = timedelta(hours=1)
REFRESH_REFUSED: Final = "refresh_refused"
ACCESS_TOKEN_EXPIRED: Final = "access_token_expired"  # noqa: S105  # a status reason
NO_REFRESH_TOKEN: Final = "no_refresh_token"  # noqa: S105  # a status reason


def created_sort_key(created_at: datetime, credential_id: str) -> str:
    """The ``by-kind`` range key: fixed-width UTC timestamp, ``#``, id (sorts by creation)."""
    return f"{created_at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{credential_id}"


def state_key(state: str) -> str:
    """What the states table stores for a ``state``: its SHA-256, so a read of the table does not
    reveal states that could still be completed."""
    return hashlib.sha256(state.encode()).hexdigest()


class CredentialsByKind(GlobalSecondaryIndex["Credential"]):  # type: ignore[no-untyped-call]  # untyped pynamodb hook
    """Every credential, by creation time (``kind`` is always ``"credential"``)."""

    class Meta:
        index_name = "by-kind"
        projection = AllProjection()

    kind = UnicodeAttribute(hash_key=True)
    created_sort = UnicodeAttribute(range_key=True)


class Credential(Model):
    """A provider credential: its description in clear, its tokens sealed (see the module doc)."""

    Meta = model_meta("CREDENTIALS_TABLE")

    credential_id = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute(default=CREDENTIAL_KIND)
    created_sort = UnicodeAttribute()  # created_sort_key(created_at, credential_id)
    name = UnicodeAttribute()
    provider = UnicodeAttribute(default=GOOGLE_PROVIDER)
    # pynamodb types `of` as the element value type, not the attribute class it takes.
    scopes: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    created_by = UnicodeAttribute()  # the admin's user id
    created_at = UTCDateTimeAttribute(default=utc_now)
    token_expires_at = UTCDateTimeAttribute(null=True)  # when the stored access token expires
    refreshable = BooleanAttribute(default=False)  # a refresh token is sealed with it
    last_used_at = UTCDateTimeAttribute(null=True)
    last_refreshed_at = UTCDateTimeAttribute(null=True)
    status_reason = UnicodeAttribute(null=True)  # set when Google refused a refresh: expired for good
    # The sealed tokens (insightmesh.credentials.crypto).
    envelope = UnicodeAttribute(default=ENVELOPE_SCHEME)
    key_id = UnicodeAttribute()  # the KMS key that encrypted the data key
    encrypted_data_key = BinaryAttribute(legacy_encoding=False)
    nonce = BinaryAttribute(legacy_encoding=False)
    ciphertext = BinaryAttribute(legacy_encoding=False)
    version = VersionAttribute()

    by_kind = CredentialsByKind()

    def status(self, now: datetime | None = None) -> tuple[Status, str | None]:
        """``(status, reason)`` by the rule in the module doc."""
        moment = now or utc_now()
        if self.status_reason:
            return "expired", self.status_reason
        if not self.refreshable:
            if self.token_expires_at is None or self.token_expires_at <= moment:
                return "expired", ACCESS_TOKEN_EXPIRED
            if self.token_expires_at - moment <= EXPIRING_WITHIN:
                return "expiring", NO_REFRESH_TOKEN
        return "active", None


class CredentialState(Model):
    """An open connect flow: single use, ten minutes, bound to the admin who started it."""

    Meta = model_meta("CREDENTIAL_STATES_TABLE", connect_timeout=1, read_timeout=2)

    state = UnicodeAttribute(hash_key=True)  # state_key(the state sent to Google)
    credential_id = UnicodeAttribute()  # the id the credential will have
    user_id = UnicodeAttribute()  # the admin who started the flow
    name = UnicodeAttribute()
    scopes: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, default=list)  # type: ignore[arg-type]
    code_verifier = UnicodeAttribute()  # PKCE (S256)
    created_at = UTCDateTimeAttribute(default=utc_now)
    expires_at = TTLAttribute()


__all__ = [
    "CREDENTIAL_KIND",
    "GOOGLE_PROVIDER",
    "Credential",
    "CredentialState",
    "CredentialsByKind",
    "created_sort_key",
    "state_key",
]
