"""Which ``response_url`` InsightMesh will post to: Slack's own, and nothing else.

A slash command or a button carries a ``response_url`` that the app may post the answer to. It
comes in the request body, so a forged or tampered one would make the worker POST an answer
(perhaps built from private documents) to any address. Only ``https://hooks.slack.com/...`` is
accepted — plus, for development, the origin of the configured ``SLACK_API_URL`` when it is not
Slack's (the local Slack sandbox serves its response URLs from its own origin; in AWS the
parameter is Slack's, so nothing else is).
"""

from __future__ import annotations

import os
from typing import Final, TypeGuard
from urllib.parse import urlsplit

SLACK_HOOKS_HOST: Final = "hooks.slack.com"
SLACK_API_HOST: Final = "slack.com"


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.password is not None:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def is_slack_response_url(url: str | None) -> TypeGuard[str]:
    """Whether ``url`` is a response URL of Slack (https, ``hooks.slack.com``, default port) or of
    the configured Slack stand-in (same scheme, host and port as ``SLACK_API_URL``)."""
    if not url:
        return False
    origin = _origin(url)
    if origin is None:
        return False
    if origin in (("https", SLACK_HOOKS_HOST, None), ("https", SLACK_HOOKS_HOST, 443)):
        return True
    configured = os.environ.get("SLACK_API_URL") or ""
    stand_in = _origin(configured) if configured else None
    return stand_in is not None and stand_in[1] != SLACK_API_HOST and origin == stand_in


def slack_response_url(url: str | None) -> str | None:
    """``url`` if Slack's (see :func:`is_slack_response_url`), else ``None``."""
    return url if is_slack_response_url(url) else None
