"""The console in a real Chromium, through `insightmesh dev` (issue 13's scenarios 1, 2, 3, 6, 7, 8).

Debian's /usr/bin/chromium, driven by Playwright for Python (never its own browser download). Every
page must carry the Content-Security-Policy and log no console error; each page's screenshot goes
to tests/browser/screenshots/ (git-ignored), at 1280 px and, for some, 390 px wide.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import ADMIN, MEMBER, NARROW, Tab, cli
from tests.e2e.dev_server import DevServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_scenario_1_sign_in_with_a_login_link(tab: Tab) -> None:
    tab.goto("/")
    assert tab.page.url == tab.url("/console")
    assert tab.page.get_by_role("heading", name="Sign in to the InsightMesh console").is_visible()
    tab.shot("sign-in")
    link = cli(tab.server, "login-link", "--email", ADMIN)
    response = tab.page.goto(link)
    assert "default-src 'none'" in response.headers["content-security-policy"]
    tab.shot("login-link")
    tab.bytes = 0
    tab.page.get_by_role("button", name=f"Sign in as {ADMIN}").click()
    tab.page.wait_for_url(tab.url("/console"))
    tab.page.wait_for_load_state("load")
    assert tab.page.get_by_role("heading", name="My access").is_visible()
    assert tab.page.get_by_role("link", name="Groups").is_visible()
    assert tab.bytes < 200_000  # the page, its stylesheet, script and icon
    tab.shot("my-access-admin")


def test_scenario_8_a_login_link_works_once(chromium: Any, server: DevServer) -> None:
    first, second = Tab(chromium, server), Tab(chromium, server)
    try:
        link = cli(server, "login-link", "--email", MEMBER)
        first.page.goto(link)
        second.page.goto(link)  # both show the button: showing spends nothing
        first.page.get_by_role("button", name=f"Sign in as {MEMBER}").click()
        first.page.wait_for_url(first.url("/console"))
        second.page.get_by_role("button", name=f"Sign in as {MEMBER}").click()
        assert second.page.get_by_role("heading", name="This sign-in link cannot be used").is_visible()
        assert "already used" in second.page.content()
        second.shot("login-link-used")
        second.page.goto(link)
        assert second.page.get_by_role("heading", name="This sign-in link cannot be used").is_visible()
        second.goto("/console/")
        assert second.page.get_by_role("heading", name="Sign in to the InsightMesh console").is_visible()
    finally:
        first.context.close()
        second.context.close()
    # A refused page is a 400 document: Chromium logs it as a failed resource, nothing else may fail.
    assert [error for error in second.errors if "status of 400" not in error] == [] and first.errors == []
    assert first.without_csp == second.without_csp == []


def test_scenario_6_a_member_sees_only_my_access_and_an_admin_url_is_a_403_page(chromium: Any,
                                                                                 server: DevServer) -> None:
    tab = Tab(chromium, server)
    try:
        tab.sign_in(MEMBER)
        nav = tab.page.get_by_role("navigation", name="Console pages")
        assert nav.get_by_role("link").all_inner_texts() == ["My access"]
        assert tab.page.get_by_role("rowheader", name="member laptop", exact=True).count() == 1
        time = tab.page.locator("time").first
        assert time.get_attribute("title").endswith("UTC") and not time.inner_text().endswith("UTC")
        tab.shot("my-access-member")
        response = tab.goto("/console/groups")
        assert response.status == 403
        assert tab.page.get_by_role("heading", name="Not allowed").is_visible()
        tab.shot("forbidden")
    finally:
        tab.context.close()
    assert [error for error in tab.errors if "status of 403" not in error] == []
    assert tab.without_csp == []


def test_a_member_revokes_a_token_after_confirming_and_it_fits_390px(chromium: Any, server: DevServer) -> None:
    tab = Tab(chromium, server, viewport=NARROW)
    try:
        tab.sign_in(MEMBER)
        assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390  # tables scroll inside
        tab.shot("my-access-member-390")
        tab.page.get_by_role("link", name="Revoke the token member laptop").click()
        assert tab.page.get_by_role("heading", name="Revoke an API token").is_visible()
        tab.shot("revoke-confirm-390")
        tab.page.get_by_role("button", name="Revoke token").click()
        tab.page.wait_for_url(tab.url("/console?notice=token-revoked"))
        assert tab.page.get_by_role("status").inner_text() == "The token is revoked."
        assert tab.page.get_by_role("link", name="Revoke the token member laptop").count() == 0
        assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        tab.close()


def test_scenarios_2_and_7_create_a_group_add_a_member_and_script_is_text(tab: Tab) -> None:
    tab.sign_in(ADMIN)
    tab.page.keyboard.press("Tab")
    assert tab.page.evaluate("document.activeElement.textContent") == "Skip to the content"
    tab.page.get_by_role("link", name="Groups").click()
    assert tab.page.get_by_role("heading", name="Groups", exact=True).is_visible()
    tab.page.get_by_label("Name").fill("<script>window.__named=1</script>")
    tab.page.get_by_role("button", name="Create group").click()
    alert = tab.page.get_by_role("alert")
    assert "String should match pattern" in alert.inner_text()
    assert tab.page.get_by_label("Name").input_value() == "<script>window.__named=1</script>"
    tab.shot("groups-error")
    tab.page.get_by_label("Name").fill("sales")
    tab.page.get_by_label("Description").fill("<script>window.__described=1</script>")
    tab.page.get_by_role("button", name="Create group").click()
    tab.page.wait_for_url(tab.url("/console/groups/sales?notice=group-created"))
    assert tab.page.locator("p.description").inner_text() == "<script>window.__described=1</script>"
    assert tab.page.evaluate("[window.__named, window.__described]") == [None, None]
    tab.page.get_by_label("E-mail starts with").fill("member")
    tab.page.get_by_role("button", name="Search people").click()
    tab.page.get_by_role("button", name=f"Add {MEMBER} to sales").click()
    tab.page.wait_for_url(tab.url("/console/groups/sales?notice=member-added"))
    assert tab.page.get_by_role("rowheader").filter(has_text=MEMBER).count() == 1
    tab.shot("group")
    tab.goto("/console/groups")
    assert tab.page.get_by_role("link", name="sales").is_visible()
    tab.shot("groups")
    tab.page.get_by_role("link", name="sales").click()
    tab.page.get_by_role("link", name=f"Remove {MEMBER} from sales").click()
    assert tab.page.get_by_text(f"Remove {MEMBER} from the group “sales”?").is_visible()
    tab.shot("remove-member-confirm")
    tab.page.get_by_role("button", name="Remove member").click()
    tab.page.wait_for_url(tab.url("/console/groups/sales?notice=member-removed"))
    assert tab.page.get_by_text("This group has no members yet.").is_visible()
    tab.page.get_by_role("link", name="Delete group…").click()
    tab.page.get_by_role("button", name="Delete group").click()
    tab.page.wait_for_url(tab.url("/console/groups?notice=group-deleted"))
    assert tab.page.get_by_role("link", name="sales").count() == 0
    tab.page.set_viewport_size(NARROW)
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390
    tab.shot("groups-390")


def test_scenario_3_restrict_meddic_to_a_group(tab: Tab) -> None:
    tab.sign_in(ADMIN)
    tab.page.get_by_role("link", name="Groups").click()
    tab.page.get_by_label("Name").fill("coached")
    tab.page.get_by_role("button", name="Create group").click()
    tab.page.wait_for_url(tab.url("/console/groups/coached?notice=group-created"))

    tab.page.get_by_role("navigation", name="Console pages").get_by_role("link", name="Agents").click()
    assert tab.page.get_by_role("heading", name="Agents", exact=True).is_visible()
    row = tab.page.get_by_role("row").filter(has=tab.page.get_by_role("link", name="meddic", exact=True))
    assert "everyone" in row.inner_text()
    tab.shot("agents")
    tab.page.get_by_role("link", name="meddic", exact=True).click()
    tab.page.wait_for_url(tab.url("/console/agents/meddic"))

    # An allow on a public agent would change nothing: the API's 409 says what to do, in place.
    to_group = tab.page.get_by_role("form", name="Grant to a group")
    to_group.get_by_label("Group").fill("coached")  # typed: the picker does not list every group
    to_group.get_by_role("button", name="Grant to the group").click()
    alert = tab.page.get_by_role("alert")
    assert "meddic is public" in alert.inner_text()  # the API's message keeps the agent's name as it is
    assert "restricted" in alert.inner_text()
    tab.shot("agent-grant-refused")

    tab.page.get_by_role("radio", name="by grant").check()
    tab.page.get_by_role("button", name="Save settings").click()
    tab.page.wait_for_url(tab.url("/console/agents/meddic?notice=agent-updated"))
    assert tab.page.get_by_role("status").inner_text() == "The agent's settings are saved."
    assert tab.page.get_by_role("radio", name="by grant").is_checked()
    # Picked by the start of its name (no script needed: a GET search, then a link that fills the form).
    search = tab.page.get_by_role("search", name="Find groups")
    search.get_by_label("Group name starts with").fill("coa")
    search.get_by_role("button", name="Find groups").click()
    tab.page.get_by_role("link", name="Choose the group coached").click()
    to_group = tab.page.get_by_role("form", name="Grant to a group")
    assert to_group.get_by_label("Group").input_value() == "coached"
    tab.shot("agent-group-picker")
    to_group.get_by_role("button", name="Grant to the group").click()
    tab.page.wait_for_url(tab.url("/console/agents/meddic?notice=grant-added"))
    assert tab.page.get_by_role("rowheader", name="group coached").is_visible()
    tab.shot("agent")

    # The API, with the browser's own session, has the grant.
    answer = tab.page.request.get(tab.url("/api/agents/meddic/grants"))
    assert answer.status == 200
    grants = answer.json()["items"]
    assert [(grant["principal"], grant["effect"]) for grant in grants] == [("group:coached", "allow")]

    # A person's grant shows their e-mail, here and on the confirmation page.
    to_person = tab.page.get_by_role("form", name="Grant to a person")
    to_person.get_by_label("E-mail").fill(MEMBER)
    to_person.get_by_label("Effect").select_option("deny")
    to_person.get_by_role("button", name="Grant to the person").click()
    tab.page.wait_for_url(tab.url("/console/agents/meddic?notice=grant-added"))
    assert tab.page.get_by_role("rowheader", name=f"user {MEMBER}").is_visible()
    tab.page.get_by_role("link", name=f"Remove the grant of user {MEMBER}").click()
    assert tab.page.get_by_text(f"Remove the deny grant of user “{MEMBER}” on the agent “meddic”?").is_visible()
    tab.page.get_by_role("button", name="Remove grant").click()
    tab.page.wait_for_url(tab.url("/console/agents/meddic?notice=grant-removed"))

    tab.page.get_by_role("link", name="Remove the grant of group coached").click()
    assert tab.page.get_by_role("heading", name="Remove a grant").is_visible()
    tab.shot("agent-remove-grant-confirm")
    tab.page.get_by_role("link", name="Cancel").click()
    tab.page.wait_for_url(tab.url("/console/agents/meddic"))
    tab.page.set_viewport_size(NARROW)
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390
    tab.shot("agent-390")
    tab.goto("/console/agents")
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390
    assert "by grant" in tab.page.get_by_role("row").filter(
        has=tab.page.get_by_role("link", name="meddic", exact=True)).inner_text()
    tab.shot("agents-390")
