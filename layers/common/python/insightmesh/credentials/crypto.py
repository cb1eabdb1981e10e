"""Envelope encryption of credential tokens with a KMS key.

:func:`seal` asks KMS for a fresh data key (``GenerateDataKey``, ``AES_256``) under
``CREDENTIALS_KMS_KEY_ID``, encrypts the JSON of the payload with it (AES-256-GCM, a random
96-bit nonce) and forgets it: only the data key *as encrypted by KMS* is kept, with the nonce,
the ciphertext and the id of the KMS key. :func:`unseal` has KMS decrypt that data key
(``Decrypt``) and opens the ciphertext.

Both bind the ciphertext to its credential twice: the KMS *encryption context*
``{"credential_id": <id>, "purpose": "insightmesh-credential"}`` (logged by CloudTrail with every
``Decrypt``; KMS refuses a data key presented under another context) and the same id as AES-GCM
associated data — so the sealed tokens of one credential cannot be copied onto another item.
A new data key is generated at every seal (each refresh), so a data key never encrypts twice.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from insightmesh.aws import client
from insightmesh.credentials.errors import CredentialExpiredError, CredentialUnavailableError
from insightmesh.observability import get_logger
from insightmesh.resilience import Timeouts

KEY_ENV: Final = "CREDENTIALS_KMS_KEY_ID"
PURPOSE: Final = "insightmesh-credential"
NONCE_BYTES: Final = 12
KMS_TIMEOUTS: Final = Timeouts(connect=2.0, read=5.0)
# KMS answers that mean "this sealed value can never be opened" rather than "try again".
_BROKEN_CODES: Final = frozenset({"InvalidCiphertextException", "IncorrectKeyException", "NotFoundException"})


class SealBrokenError(CredentialExpiredError):
    """The sealed tokens cannot be opened (altered, or their KMS key is gone): connect again."""

    code = "credential_unreadable"


@dataclass(frozen=True)
class Sealed:
    """Sealed tokens, as stored on the credential item. Nothing here is secret without KMS."""

    key_id: str
    encrypted_data_key: bytes = field(repr=False)
    nonce: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)


def encryption_context(credential_id: str) -> dict[str, str]:
    return {"credential_id": credential_id, "purpose": PURPOSE}


def _associated_data(credential_id: str) -> bytes:
    return f"{PURPOSE}\n{credential_id}".encode()


def _key_id() -> str:
    key_id = os.environ.get(KEY_ENV, "").strip()
    if not key_id:
        raise CredentialUnavailableError(f"credential encryption is not configured ({KEY_ENV} is not set)")
    return key_id


def _kms() -> Any:
    return client("kms", timeouts=KMS_TIMEOUTS)


def _kms_failure(error: Exception, operation: str) -> Exception:
    code = error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""
    get_logger().warning("kms call failed", extra={"operation": operation, "error_code": code or type(error).__name__})
    if code in _BROKEN_CODES and operation == "Decrypt":
        return SealBrokenError("the credential's tokens cannot be decrypted; connect it again")
    return CredentialUnavailableError("the credential key (KMS) is unavailable; try again shortly")


def seal(credential_id: str, payload: Mapping[str, Any]) -> Sealed:
    """Encrypt ``payload`` (JSON-serialisable) for credential ``credential_id`` (see the module doc)."""
    try:
        response = _kms().generate_data_key(KeyId=_key_id(), KeySpec="AES_256",
                                            EncryptionContext=encryption_context(credential_id))
    except (ClientError, BotoCoreError) as error:
        raise _kms_failure(error, "GenerateDataKey") from error
    data_key = bytes(response["Plaintext"])
    nonce = secrets.token_bytes(NONCE_BYTES)
    plaintext = json.dumps(dict(payload), separators=(",", ":"), sort_keys=True).encode()
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, _associated_data(credential_id))
    del data_key, plaintext  # the plaintext data key is never stored nor kept
    return Sealed(key_id=str(response["KeyId"]), encrypted_data_key=bytes(response["CiphertextBlob"]),
                  nonce=nonce, ciphertext=ciphertext)


def unseal(credential_id: str, sealed: Sealed) -> dict[str, Any]:
    """The payload :func:`seal` encrypted for ``credential_id``.

    Raises SealBrokenError when it can never be opened (altered ciphertext, another
    credential's, unknown key), CredentialUnavailableError when KMS is unreachable.
    """
    try:
        response = _kms().decrypt(CiphertextBlob=sealed.encrypted_data_key, KeyId=sealed.key_id,
                                  EncryptionContext=encryption_context(credential_id))
    except (ClientError, BotoCoreError) as error:
        raise _kms_failure(error, "Decrypt") from error
    data_key = bytes(response["Plaintext"])
    try:
        plaintext = AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, _associated_data(credential_id))
    except (InvalidTag, ValueError) as error:
        raise SealBrokenError("the credential's tokens cannot be decrypted; connect it again") from error
    finally:
        del data_key
    try:
        payload = json.loads(plaintext)
    except ValueError as error:
        raise SealBrokenError("the credential's tokens cannot be read; connect it again") from error
    if not isinstance(payload, dict):
        raise SealBrokenError("the credential's tokens cannot be read; connect it again")
    return payload


__all__ = ["PURPOSE", "SealBrokenError", "Sealed", "encryption_context", "seal", "unseal"]
