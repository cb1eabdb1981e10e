"""The Knowledge and Audit pages in a real Chromium, through `insightmesh dev` (issue 13, section 3).

Documents go in with `insightmesh ingest`, as the README's admin tasks do: one folder that indexes
and one with a corrupt PDF, which fails with its reason. The audit entries
come from a group created in the console in the test. Names are unique to this module, as the dev
server is shared by every browser module.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.browser.conftest import ADMIN, NARROW, Tab, cli
from tests.e2e.dev_server import CLI, ROOT, _env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
GROUP = "kbpage-auditors"


def test_knowledge_lists_ingested_and_failed_documents_and_filters_by_source(tab: Tab, tmp_path: Path) -> None:
    handbook = (tmp_path / "kbpage-handbook").resolve()
    handbook.mkdir()
    (handbook / "kbpage-refunds.md").write_text("# Refunds\n\nRefunds are paid within 45 days.\n")
    broken = (tmp_path / "kbpage-corrupt").resolve()
    broken.mkdir()
    (broken / "kbpage-orphan.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << garbage")
    cli(tab.server, "ingest", str(handbook), "--acl", "domain:example.com")
    failed = subprocess.run([*CLI, "ingest", str(broken), "--port",
                             str(tab.server.port)], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1, failed.stderr  # a failed document: exit 1, and it is recorded

    tab.sign_in(ADMIN)
    tab.page.get_by_role("navigation", name="Console pages").get_by_role("link", name="Knowledge").click()
    assert tab.page.get_by_role("heading", name="Knowledge", exact=True).is_visible()
    table = tab.page.get_by_role("table")
    orphan = table.get_by_role("row").filter(has_text="kbpage-orphan.pdf")
    assert "failed" in orphan.inner_text() and "ExtractionError" in orphan.inner_text()  # the reason
    refunds = table.get_by_role("row").filter(has_text="kbpage-refunds.md")
    assert "indexed" in refunds.inner_text() and "domain:example.com" in refunds.inner_text()
    assert refunds.locator("time").count() == 2  # modified and ingested, in the viewer's time zone
    texts = table.get_by_role("rowheader").all_inner_texts()
    assert [text.split()[0] for text in texts].index("kbpage-orphan.pdf") < \
        [text.split()[0] for text in texts].index("kbpage-refunds.md")  # failed documents first
    tab.shot("knowledge")

    tab.page.get_by_label("Source").fill(f"local:{handbook}")
    tab.page.get_by_role("button", name="Filter documents").click()
    tab.page.wait_for_url("**/console/knowledge?source=*")
    assert tab.page.get_by_label("Source").input_value() == f"local:{handbook}"
    rows = tab.page.get_by_role("table").get_by_role("rowheader").all_inner_texts()
    assert [text.split()[0] for text in rows] == ["kbpage-refunds.md"]

    tab.page.get_by_label("Status").select_option("failed")
    tab.page.get_by_role("button", name="Filter documents").click()
    tab.page.wait_for_url("**status=failed*")
    assert tab.page.get_by_text("No document matches these filters.").is_visible()
    tab.page.get_by_role("link", name="Clear filters").click()
    tab.page.get_by_role("link", name=f"Only the documents of local:{broken}").click()
    rows = tab.page.get_by_role("table").get_by_role("rowheader").all_inner_texts()
    assert [text.split()[0] for text in rows] == ["kbpage-orphan.pdf"]

    tab.page.get_by_label("Readable by").fill("team sales")  # not a principal: the API's 422, in place
    tab.page.get_by_role("button", name="Filter documents").click()
    assert "not a principal" in tab.page.get_by_role("alert").inner_text()
    assert tab.page.get_by_label("Readable by").input_value() == "team sales"

    tab.goto("/console/knowledge")
    tab.page.set_viewport_size(NARROW)
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390  # the table scrolls inside
    tab.shot("knowledge-390")


def test_audit_shows_a_group_created_in_the_console_filters_and_refuses_a_long_range(tab: Tab) -> None:
    tab.sign_in(ADMIN)
    tab.goto("/console/groups")
    tab.page.get_by_label("Name").fill(GROUP)
    tab.page.get_by_label("Description").fill("<b>kept as text</b>")
    tab.page.get_by_role("button", name="Create group").click()
    tab.page.wait_for_url(tab.url(f"/console/groups/{GROUP}?notice=group-created"))

    tab.page.get_by_role("navigation", name="Console pages").get_by_role("link", name="Audit").click()
    assert tab.page.get_by_role("heading", name="Audit", exact=True).is_visible()
    assert tab.page.locator(".zone").inner_text() == "America/New_York"  # the zone the form will send
    created = tab.page.get_by_role("row").filter(has=tab.page.get_by_role("link", name=f"group:{GROUP}",
                                                                           exact=True))
    assert "group.create" in created.first.inner_text() and ADMIN in created.first.inner_text()
    created.first.locator("summary").click()
    details = created.first.locator("pre")
    assert details.is_visible() and "<b>kept as text</b>" in details.inner_text()
    tab.shot("audit")

    tab.page.get_by_label("Action").fill("group.create")
    tab.page.get_by_role("button", name="Filter entries").click()
    tab.page.wait_for_url("**action=group.create*")
    assert "tz=America%2FNew_York" in tab.page.url  # the viewer's zone, from the browser
    assert tab.page.get_by_text("Days are read in America/New_York").is_visible()
    actions = tab.page.get_by_role("table").locator("tbody tr td:nth-child(3)").all_inner_texts()
    assert actions and {text.split()[0] for text in actions} == {"group.create"}

    tab.page.get_by_role("link", name=f"History of group:{GROUP}").first.click()
    tab.page.wait_for_url("**target=group%3Akbpage-auditors*")
    assert tab.page.get_by_label("Target").input_value() == f"group:{GROUP}"
    targets = tab.page.get_by_role("table").locator("tbody tr td:nth-child(4) a code").all_inner_texts()
    assert targets and set(targets) == {f"group:{GROUP}"}
    tab.page.get_by_role("link", name=f"group:{GROUP}", exact=True).first.click()
    tab.page.wait_for_url(tab.url(f"/console/groups/{GROUP}"))  # a target opens its console page

    tab.goto("/console/audit")
    tab.page.get_by_label("Action").fill("group.create")
    tab.page.get_by_label("From day").fill("2026-01-01")
    tab.page.get_by_label("To day").fill("2026-03-01")
    tab.page.get_by_role("button", name="Filter entries").click()
    assert "at most 31 days" in tab.page.get_by_role("alert").inner_text()
    assert tab.page.get_by_label("From day").input_value() == "2026-01-01"
    assert tab.page.get_by_label("To day").input_value() == "2026-03-01"
    assert tab.page.get_by_label("Action").input_value() == "group.create"
    tab.shot("audit-range-refused")

    tab.goto("/console/audit")
    tab.page.set_viewport_size(NARROW)
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390
    tab.shot("audit-390")
