"""The Users and Credentials pages in a real Chromium, through `insightmesh dev` (issue 13, section 3).

The package's one dev server is shared with the other console modules: everything this module
creates is named ``ucpages-…``. Screenshots: users, user, credentials (and their 390 px forms).
"""

from __future__ import annotations

import pytest

from tests.browser.conftest import ADMIN, NARROW, Tab, cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
TOKEN_OWNER, ADMIN_TO_BE = "ucpages-token@example.com", "ucpages-admin@example.com"


def fits_390(tab: Tab) -> None:
    tab.page.set_viewport_size(NARROW)
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390  # tables scroll inside


def test_search_a_user_by_prefix_open_them_and_revoke_a_token_after_confirming(tab: Tab) -> None:
    cli(tab.server, "token", "create", "--email", TOKEN_OWNER, "--name", "ucpages script")
    tab.sign_in(ADMIN)
    tab.page.get_by_role("navigation", name="Console pages").get_by_role("link", name="Users").click()
    assert tab.page.get_by_role("heading", name="Users", exact=True).is_visible()
    tab.page.get_by_role("searchbox", name="E-mail starts with").fill("UCPAGES-T")
    tab.page.get_by_role("button", name="Search").click()
    tab.page.wait_for_url(tab.url("/console/users?q=UCPAGES-T"))
    assert tab.page.get_by_role("rowheader").all_inner_texts() == [TOKEN_OWNER]
    tab.shot("users")
    tab.page.get_by_role("searchbox", name="E-mail starts with").fill("ucpages-nobody")
    tab.page.get_by_role("button", name="Search").click()
    assert tab.page.get_by_text("Nobody's e-mail starts with “ucpages-nobody”.").is_visible()
    tab.page.get_by_role("searchbox", name="E-mail starts with").fill("ucpages-t")
    tab.page.get_by_role("button", name="Search").click()

    tab.page.get_by_role("link", name=TOKEN_OWNER).click()
    assert tab.page.get_by_role("heading", name="Identities").is_visible()
    assert tab.page.get_by_role("link", name="all_users").is_visible()  # groups link to their page
    assert tab.page.get_by_role("rowheader", name="ucpages script", exact=True).is_visible()
    tab.shot("user")
    tab.page.get_by_role("link", name="Revoke the token ucpages script").click()
    assert tab.page.get_by_role("heading", name="Revoke a user's API token").is_visible()
    tab.page.get_by_role("button", name="Revoke token").click()
    tab.page.wait_for_url("**/console/users/*?notice=user-token-revoked")
    assert tab.page.get_by_role("status").inner_text() == "The user's token is revoked."
    assert tab.page.get_by_role("link", name="Revoke the token ucpages script").count() == 0
    assert "revoked" in tab.page.get_by_role("row").filter(has_text="ucpages script").inner_text()
    assert cli(tab.server, "token", "list", "--email", TOKEN_OWNER).count("revoked") == 1
    fits_390(tab)
    tab.shot("user-390")
    tab.goto("/console/users?q=ucpages")
    assert tab.page.evaluate("document.documentElement.scrollWidth") <= 390
    tab.shot("users-390")


def test_grant_and_revoke_admin_of_a_throwaway_user_and_not_of_yourself(tab: Tab) -> None:
    cli(tab.server, "token", "create", "--email", ADMIN_TO_BE, "--name", "ucpages admin script")
    tab.sign_in(ADMIN)
    tab.goto("/console/users?q=ucpages-admin")
    tab.page.get_by_role("link", name=ADMIN_TO_BE).click()
    tab.page.get_by_role("link", name="Grant admin rights…").click()
    assert tab.page.get_by_text(f"Make {ADMIN_TO_BE} an admin?").is_visible()
    tab.page.get_by_role("button", name="Grant admin rights").click()
    tab.page.wait_for_url("**/console/users/*?notice=admin-granted")
    assert tab.page.get_by_text("This user is an admin.").is_visible()
    tab.page.get_by_role("link", name="Revoke admin rights…").click()
    tab.page.get_by_role("button", name="Revoke admin rights").click()
    tab.page.wait_for_url("**/console/users/*?notice=admin-revoked")
    assert tab.page.get_by_text("This user is not an admin.").is_visible()

    # Your own admin rights: the API's 409, shown in place on your page.
    tab.goto(f"/console/users?q={ADMIN}")
    tab.page.get_by_role("link", name=ADMIN, exact=True).click()
    tab.page.get_by_role("link", name="Revoke admin rights…").click()
    tab.page.get_by_role("button", name="Revoke admin rights").click()
    alert = tab.page.get_by_role("alert")
    assert "your own admin rights" in alert.inner_text()
    assert tab.page.get_by_text("This user is an admin.").is_visible()
    tab.shot("user-admin-refused")


def test_credentials_show_the_empty_state_and_the_connect_error_in_place(tab: Tab) -> None:
    tab.sign_in(ADMIN)
    tab.page.get_by_role("navigation", name="Console pages").get_by_role("link", name="Credentials").click()
    assert tab.page.get_by_role("heading", name="Credentials", exact=True).is_visible()
    assert tab.page.get_by_text("No credential is connected yet.").is_visible()
    tab.page.get_by_label("Name").fill("ucpages <Drive>")
    tab.page.get_by_role("checkbox", name="Directory users, read only").check()
    tab.page.get_by_role("button", name="Connect Google").click()
    alert = tab.page.get_by_role("alert")
    assert "not configured" in alert.inner_text()  # no Google client locally: the API's 503, in place
    assert tab.page.get_by_label("Name").input_value() == "ucpages <Drive>"
    assert tab.page.get_by_role("checkbox", name="Directory users, read only").is_checked()
    tab.shot("credentials")
    fits_390(tab)
    tab.shot("credentials-390")
