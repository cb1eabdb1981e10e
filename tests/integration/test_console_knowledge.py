"""The console's Knowledge and Audit pages in-process (moto), through the admin API's own app with
the browser's cookie: what they show, their filters (kept across pages of the API's cursor), the
API's refusals in place, the days of the audit range read in the viewer's time zone, and a
member's 403."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from urllib.parse import parse_qs, urlsplit

import pytest

from insightmesh.console.audit_pages import AuditFilters, target_href
from tests.integration import test_console as base
from tests.integration.conftest import template_tables
from tests.integration.test_console import ADMIN_EMAIL, ADMIN_ID, MEMBER_EMAIL, MEMBER_ID, Browser, sign_in


@pytest.fixture
def console(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The console handler on fresh tables with an admin and a member, as in test_console."""
    from insightmesh.auth.settings import get_auth_settings

    get_auth_settings.cache_clear()
    with template_tables(monkeypatch):
        from insightmesh.directory.users import ensure_system_groups

        ensure_system_groups()
        base.make_user(ADMIN_ID, ADMIN_EMAIL, is_admin=True)
        base.make_user(MEMBER_ID, MEMBER_EMAIL)
        if not base._handler:
            base._handler.append(base._load(base.CONSOLE))
        yield base._handler[0]
    get_auth_settings.cache_clear()


def document(document_id: str, *, source: str = "local:/srv/handbook", title: str = "", status: str = "indexed",
             acl: tuple[str, ...] = ("anyone",), chunks: int = 3, error: str | None = None) -> None:
    from insightmesh.knowledge.models import KnowledgeDocument

    KnowledgeDocument(document_id, source=source, title=title or document_id, status=status, chunk_count=chunks,
                      acl=list(acl), error=error, mime_type="text/markdown",
                      modified_time=datetime(2026, 11, 30, 9, 0, tzinfo=UTC)).save()


def rows(body: str) -> list[str]:
    """The text of each table row's header cell, in order."""
    cells = re.findall(r'<th scope="row">(.*?)</th>', body, flags=re.S)
    return [html.unescape(re.sub(r"<[^>]+>", " ", cell)).split()[0] if cell.strip() else "" for cell in cells]


def link(body: str, name: str) -> str:
    found = re.search(rf'<a href="([^"]+)">{name}</a>', body)
    assert found, body
    return html.unescape(found.group(1))


def follow(browser: Browser, href: str) -> str:
    parts = urlsplit(href)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    page = browser.request("GET", parts.path, query=query)
    assert page.status == 200, page.body
    return page.body


# -- Knowledge ------------------------------------------------------------------------------------


def test_knowledge_lists_failed_documents_first_with_reasons_source_acl_and_chunks(console: ModuleType) -> None:
    document("local:aaa", title="Refund policy", acl=("group:sales", "domain:example.com"), chunks=7)
    document("local:bbb", title="<script>x</script>", status="failed", chunks=0, error="file expands to more "
             "than 50 MB")
    browser = sign_in(console, ADMIN_ID)
    page = browser.request("GET", "/console/knowledge")
    assert page.status == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    body = page.body
    assert body.index("&lt;script&gt;x&lt;/script&gt;") < body.index("Refund policy")  # failed first
    assert "<script>x" not in body
    assert "ile expands to more than 50 MB." in body and '<span class="state failed">failed</span>' in body
    assert "<code class=\"long\">group:sales</code> <code class=\"long\">domain:example.com</code>" in body
    assert '<td class="num">7</td>' in body
    assert '<time datetime="2026-11-30T09:00:00Z"' in body or '<time datetime="2026-11-30T09:00:00+00:00"' in body
    assert 'href="/console/knowledge?source=local%3A%2Fsrv%2Fhandbook"' in body  # a source opens its view
    assert 'aria-current="page">Knowledge</a>' in body


def test_knowledge_filters_by_source_status_and_acl(console: ModuleType) -> None:
    document("local:a1", title="Handbook one", source="local:/srv/handbook")
    document("local:b1", title="Deck one", source="local:/srv/decks", acl=("group:sales",))
    document("local:b2", title="Deck broken", source="local:/srv/decks", status="failed", error="no text")
    browser = sign_in(console, ADMIN_ID)
    decks = browser.request("GET", "/console/knowledge", query={"source": "local:/srv/decks"}).body
    assert "Deck one" in decks and "Deck broken" in decks and "Handbook one" not in decks
    assert 'value="local:/srv/decks"' in decks and "Clear filters" in decks
    failed = browser.request("GET", "/console/knowledge", query={"status": "failed"}).body
    assert "Deck broken" in failed and "Deck one" not in failed and "Handbook one" not in failed
    assert '<option value="failed" selected>' in failed
    sales = browser.request("GET", "/console/knowledge", query={"acl": "group:sales"}).body
    assert "Deck one" in sales and "Handbook one" not in sales and "Deck broken" not in sales
    none = browser.request("GET", "/console/knowledge", query={"source": "local:/nowhere"}).body
    assert "No document matches these filters." in none


def test_knowledge_shows_the_apis_refusal_in_place_and_an_empty_state(console: ModuleType) -> None:
    browser = sign_in(console, ADMIN_ID)
    empty = browser.request("GET", "/console/knowledge").body
    assert "The knowledge base is empty" in empty and "<table" not in empty
    refused = browser.request("GET", "/console/knowledge", query={"acl": "team sales", "source": "local:/x"})
    assert refused.status == 200 and 'role="alert"' in refused.body and "not a principal" in refused.body
    assert 'value="team sales"' in refused.body and 'value="local:/x"' in refused.body  # the values kept
    assert "The knowledge base is empty" not in refused.body
    bad_status = browser.request("GET", "/console/knowledge", query={"status": "gone"})
    assert bad_status.status == 200 and 'role="alert"' in bad_status.body and "status" in bad_status.body


def test_knowledge_pages_with_the_apis_cursor_keeping_the_filters(console: ModuleType) -> None:
    for number in range(30):
        document(f"local:doc{number:02d}", title=f"Note {number:02d}", source="local:/srv/notes")
    document("local:other", title="Elsewhere", source="local:/srv/other")
    browser = sign_in(console, ADMIN_ID)
    first = browser.request("GET", "/console/knowledge", query={"source": "local:/srv/notes"}).body
    assert len(rows(first)) == 25 and "Elsewhere" not in first
    following = link(first, "Next page")
    assert "source=local%3A%2Fsrv%2Fnotes" in following and "cursor=" in following
    second = follow(browser, following)
    assert len(rows(second)) == 5 and "Note 29" in second and "Elsewhere" not in second
    assert "Next page" not in second
    assert link(second, "First page") == "/console/knowledge?source=local%3A%2Fsrv%2Fnotes"


def test_a_member_gets_a_403_page_for_knowledge_and_audit(console: ModuleType) -> None:
    browser = sign_in(console, MEMBER_ID)
    for path in ("/console/knowledge", "/console/audit"):
        page = browser.request("GET", path)
        assert page.status == 403 and "Not allowed" in page.body
    assert Browser(console).request("GET", "/console/audit").status == 401


# -- Audit ----------------------------------------------------------------------------------------


def audit_at(moment: datetime, *, action: str = "group.update", target: str = "group:sales") -> None:
    from insightmesh.audit.log import AuditEntry, entry

    entry(actor=None, action=action, target=target, after={"description": "<b>new</b>"}, request_id="req-test",
          at=moment).save(condition=AuditEntry.put_condition())


def test_audit_shows_a_console_change_newest_first_with_links_and_escaped_details(console: ModuleType) -> None:
    browser = sign_in(console, ADMIN_ID)
    csrf = browser.csrf(browser.request("GET", "/console/groups"))
    created = browser.request("POST", "/console/groups", form={"csrf_token": csrf, "name": "auditors",
                                                              "description": "<script>alert(1)</script>"})
    assert created.status == 303
    page = browser.request("GET", "/console/audit")
    assert page.status == 200
    body = page.body
    assert "<code>group.create</code>" in body
    assert '<a href="/console/groups/auditors"><code class="long">group:auditors</code>' in body
    assert body.index("<td><code>group.create</code>") < body.index("<td><code>auth.login_link</code>")  # newest first
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>alert" not in body  # details, escaped
    assert re.search(r'<pre class="json">\{\n  &#34;outcome&#34;: &#34;allowed&#34;', body), body
    assert "admin@example.com" in body and 'aria-current="page">Audit</a>' in body
    assert '<span class="zone" data-timezone-shown>UTC</span>' in body  # without script: UTC, and it says so


def test_audit_filters_by_action_target_and_actor(console: ModuleType) -> None:
    browser = sign_in(console, ADMIN_ID)
    csrf = browser.csrf(browser.request("GET", "/console/groups"))
    for name in ("alpha", "beta"):
        browser.request("POST", "/console/groups", form={"csrf_token": csrf, "name": name})
    by_action = browser.request("GET", "/console/audit", query={"action": "group.create"}).body
    assert "group:alpha" in by_action and "group:beta" in by_action and "auth.login_link" not in by_action
    assert 'value="group.create"' in by_action
    by_target = browser.request("GET", "/console/audit", query={"target": "group:beta"}).body
    assert "group:beta" in by_target and "group:alpha" not in by_target
    by_actor = browser.request("GET", "/console/audit", query={"actor": "nobody@example.com"}).body
    assert "No entry matches these filters." in by_actor and 'value="nobody@example.com"' in by_actor
    mine = browser.request("GET", "/console/audit", query={"actor": "admin@example.com", "action": "group.create"})
    assert "group:alpha" in mine.body


def test_audit_days_are_read_in_the_viewers_time_zone(console: ModuleType) -> None:
    # 03:00 UTC on 7 December is still 6 December in New York.
    audit_at(datetime(2026, 12, 7, 3, 0, tzinfo=UTC), target="group:night")
    browser = sign_in(console, ADMIN_ID)
    days = {"from": "2026-12-06", "to": "2026-12-06", "target": "group:night"}
    in_new_york = browser.request("GET", "/console/audit", query={**days, "tz": "America/New_York"}).body
    assert "group.update" in in_new_york and 'value="America/New_York"' in in_new_york
    assert "Days are read in <span class=\"zone\">America/New_York</span>" in in_new_york
    in_utc = browser.request("GET", "/console/audit", query=days).body
    assert "group.update" not in in_utc and "No entry matches these filters." in in_utc
    unknown = browser.request("GET", "/console/audit", query={**days, "tz": "Mars/Olympus"}).body
    assert 'role="alert"' in unknown and "tz" in unknown


def test_audit_range_over_31_days_is_the_apis_422_in_place_with_the_values_kept(console: ModuleType) -> None:
    browser = sign_in(console, ADMIN_ID)
    page = browser.request("GET", "/console/audit", query={"from": "2026-10-01", "to": "2026-12-01",
                                                           "action": "group.create"})
    assert page.status == 200 and 'role="alert"' in page.body and "at most 31 days" in page.body
    assert 'value="2026-10-01"' in page.body and 'value="2026-12-01"' in page.body
    assert 'value="group.create"' in page.body and "<table" not in page.body
    backwards = browser.request("GET", "/console/audit", query={"from": "2026-12-05", "to": "2026-12-01"}).body
    assert 'role="alert"' in backwards and "nd is before start." in backwards
    allowed = browser.request("GET", "/console/audit", query={"from": "2026-11-01", "to": "2026-12-01"}).body
    assert 'role="alert"' not in allowed  # 1 November to the end of 1 December: 31 days


def test_audit_pages_with_the_apis_cursor_keeping_every_filter(console: ModuleType) -> None:
    start = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    for minute in range(30):
        audit_at(start + timedelta(minutes=minute), action="agent.update", target="agent:meddic")
    audit_at(start, action="group.update", target="group:other")
    browser = sign_in(console, ADMIN_ID)
    query = {"action": "agent.update", "from": "2026-11-20", "to": "2026-11-20", "tz": "Europe/Paris"}
    first = browser.request("GET", "/console/audit", query=query).body
    assert first.count("<td><code>agent.update</code>") == 25 and "group:other" not in first
    assert '<a href="/console/agents/meddic"><code class="long">agent:meddic</code></a>' in first
    following = link(first, "Next page")
    for kept in ("action=agent.update", "from=2026-11-20", "to=2026-11-20", "tz=Europe%2FParis", "cursor="):
        assert kept in following
    second = follow(browser, following)
    assert second.count("<td><code>agent.update</code>") == 5 and "Next page" not in second


def test_target_links_and_days_as_iso_bounds() -> None:
    assert target_href("agent:meddic") == "/console/agents/meddic"
    assert target_href("group:sales") == "/console/groups/sales"
    assert target_href("user:U 1/2") == "/console/users/U%201%2F2"
    assert target_href("job:j-1") == "/console/jobs/j-1"
    assert target_href("knowledge:local:/srv/handbook") == "/console/knowledge?source=local%3A%2Fsrv%2Fhandbook"
    assert target_href("audit") is None and target_href("workspace:T1") is None
    days = AuditFilters.model_validate({"from": "2026-07-01", "to": "2026-07-02", "tz": "Europe/Paris"})
    assert days.start() == "2026-07-01T00:00:00+02:00" and days.end() == "2026-07-02T23:59:59.999999+02:00"
    assert AuditFilters.model_validate({"from": "", "to": ""}).start() == ""
    with pytest.raises(ValueError, match="unknown time zone"):
        AuditFilters.model_validate({"tz": "Nowhere/Atall"})
