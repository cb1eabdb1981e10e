"""The rate-limit counters table (``RATE_LIMIT_TABLE``; template: ``RateLimitTable``).

Access pattern — the only one:

* ``UpdateItem`` on ``key = "<scope>#<client>#<window start>"``: ``ADD hits 1`` and set
  ``expires_at`` (TTL, two windows later) — one atomic write per counted request, no read.
"""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.models import Model

from insightmesh.aws import model_meta


class RateLimitCounter(Model):
    Meta = model_meta("RATE_LIMIT_TABLE", connect_timeout=1, read_timeout=1)

    key = UnicodeAttribute(hash_key=True)
    hits = NumberAttribute(default=0)
    expires_at = TTLAttribute(null=True)
