"""insightmesh.credentials without AWS nor network: names, scopes, the status rule, the HTML pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from insightmesh.credentials import pages
from insightmesh.credentials.models import Credential
from insightmesh.credentials.schemas import (
    DRIVE_READONLY,
    GOOGLE_SCOPES,
    CredentialSummary,
    clean_name,
    expand_scope,
    normalize_scopes,
)

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(("raw", "clean"), [("Drive", "Drive"), ("  padded ", "padded"), ("x" * 80, "x" * 80),
                                            ("<b>&amp;</b>", "<b>&amp;</b>"), ("日本語", "日本語")])
def test_valid_names(raw: str, clean: str) -> None:
    assert clean_name(raw) == clean


@pytest.mark.parametrize("raw", ["", "  ", "x" * 81, "a\nb", "a\rb", "a\tb", "\x00", "\x7f", "a\u2028b", "\u200b"])
def test_invalid_names(raw: str) -> None:
    with pytest.raises(ValueError, match="name"):
        clean_name(raw)


def test_scopes_are_expanded_deduplicated_and_sorted() -> None:
    assert normalize_scopes(["drive.readonly", DRIVE_READONLY, "admin.directory.user.readonly"]) == sorted(
        {DRIVE_READONLY, GOOGLE_SCOPES["admin.directory.user.readonly"]})
    assert expand_scope(" drive.readonly ") == DRIVE_READONLY


@pytest.mark.parametrize("scopes", [[], ["drive"], ["https://www.googleapis.com/auth/drive"], ["openid"],
                                    ["https://www.googleapis.com/auth/drive.readonly?x"]])
def test_scopes_outside_the_allow_list_are_refused(scopes: list[str]) -> None:
    with pytest.raises(ValueError, match="scope"):
        normalize_scopes(scopes)


def _credential(*, refreshable: bool, expires_in: timedelta | None, reason: str | None = None) -> Credential:
    return Credential("c-1", name="n", created_sort="s", created_by="u", key_id="k", refreshable=refreshable,
                      token_expires_at=None if expires_in is None else NOW + expires_in, status_reason=reason)


@pytest.mark.parametrize(("refreshable", "expires_in", "reason", "expected"), [
    (True, timedelta(minutes=-5), None, ("active", None)),
    (True, timedelta(hours=1), None, ("active", None)),
    (True, timedelta(hours=1), "refresh_refused", ("expired", "refresh_refused")),
    (False, timedelta(hours=2), None, ("active", None)),
    (False, timedelta(minutes=59), None, ("expiring", "no_refresh_token")),
    (False, timedelta(seconds=-1), None, ("expired", "access_token_expired")),
    (False, None, None, ("expired", "access_token_expired")),
])
def test_the_status_rule(refreshable: bool, expires_in: timedelta | None, reason: str | None,
                         expected: tuple[str, str | None]) -> None:
    assert _credential(refreshable=refreshable, expires_in=expires_in, reason=reason).status(NOW) == expected


def test_pages_escape_every_value() -> None:
    summary = CredentialSummary(id="<id>", name="<script>alert(1)</script>", scopes=[DRIVE_READONLY],
                                status="active", created_by="u", created_at=NOW, refreshable=False)
    page = pages.connected_page(summary, request_id="<rid>")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;id&gt;" in page and "&lt;rid&gt;" in page and "drive.readonly" in page
    assert "no refresh token" in page
    error = pages.error_page("bad <img src=x onerror=alert(1)>", request_id="r")
    assert "<img" not in error and "&lt;img src=x onerror=alert(1)&gt;" in error


def test_the_pages_policy_allows_nothing_but_their_style() -> None:
    headers = pages.html_headers()
    policy = headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none';") and "script-src" not in policy
    assert "style-src 'sha256-" in policy and "frame-ancestors 'none'" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_the_summary_refuses_token_fields() -> None:
    with pytest.raises(ValueError, match="access_token"):
        CredentialSummary(id="c", name="n", scopes=[], status="active", created_by="u", created_at=NOW,
                          refreshable=True, access_token="ya29.x")  # type: ignore[call-arg]
