"""What the console's Agents page needs of the admin API (issue 13): grants listed with the user's
e-mail, and groups found by the start of their name (a grant form that works with 1,000+ groups).

Through the real admin_api handler (moto), with the fixtures of ``test_admin_api``.
"""

from __future__ import annotations

from tests.integration import test_admin_api as admin_api_tests
from tests.integration.conftest import DynamoCalls
from tests.integration.conftest import save_user as make_user
from tests.integration.test_admin_api import MEMBER_EMAIL, MEMBER_ID, Api, assert_envelope, make_agent

api = admin_api_tests.api  # the fixture, under the name the tests ask for


def test_an_agents_grants_carry_the_users_email_from_one_batch_get(api: Api, dynamo_calls: DynamoCalls) -> None:
    make_agent("secret")
    make_user("u-noaddress", None)
    api.ok("POST", "/api/groups", 201, body={"name": "sales"})
    for body in ({"principal_type": "group", "principal_id": "sales"}, {"email": MEMBER_EMAIL},
                 {"user_id": "u-noaddress"}):
        api.ok("POST", "/api/agents/secret/grants", 201, body={**body, "effect": "allow"})
    page = dynamo_calls.during(lambda: api.ok("GET", "/api/agents/secret/grants"))
    listed = api.ok("GET", "/api/agents/secret/grants")["items"]
    assert {grant["principal"]: grant["email"] for grant in listed} == {
        "group:sales": None, f"user:{MEMBER_ID}": MEMBER_EMAIL, "user:u-noaddress": None}
    assert page.count("BatchGetItem:-") == 1 and not any(call.startswith("Scan:") for call in page)
    detail = api.ok("GET", "/api/agents/secret")
    assert {grant["principal"]: grant["email"] for grant in detail["grants"]}[f"user:{MEMBER_ID}"] == MEMBER_EMAIL
    # A page without user grants reads no user.
    make_agent("quiet")
    api.ok("POST", "/api/agents/quiet/grants", 201, body={"principal_type": "group", "principal_id": "sales",
                                                          "effect": "deny"})
    quiet = dynamo_calls.during(lambda: api.ok("GET", "/api/agents/quiet/grants"))
    assert "BatchGetItem:-" not in quiet


def test_groups_are_found_by_the_start_of_their_name_with_their_own_cursor(api: Api,
                                                                          dynamo_calls: DynamoCalls) -> None:
    for name in ("sales", "sales-emea", "sales-us", "salt", "support", "marketing"):
        api.ok("POST", "/api/groups", 201, body={"name": name})

    def found(prefix: str, limit: int) -> list[list[str]]:
        pages: list[list[str]] = []
        cursor = None
        while True:
            query = {"name_prefix": prefix, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
            page = api.ok("GET", "/api/groups", query=query)
            pages.append([group["name"] for group in page["items"]])
            cursor = page["next_cursor"]
            if not cursor:
                return pages

    assert found("sales", 2) == [["sales", "sales-emea"], ["sales-us"]]
    assert [name for page in found("SAL", 100) for name in page] == ["sales", "sales-emea", "sales-us", "salt"]
    assert found("zzz", 10) == [[]]
    calls = dynamo_calls.during(lambda: api.ok("GET", "/api/groups", query={"name_prefix": "s"}))
    assert calls.count("Query:test-GroupsTable") == 1 and not any(call.startswith("Scan:") for call in calls)
    # A prefix's cursor is its own: replayed without it, or with another prefix, it is a 422.
    cursor = api.ok("GET", "/api/groups", query={"name_prefix": "sales", "limit": "1"})["next_cursor"]
    assert_envelope(api.call("GET", "/api/groups", query={"cursor": cursor}), 422, "validation_error")
    assert_envelope(api.call("GET", "/api/groups", query={"name_prefix": "sal", "cursor": cursor}), 422,
                    "validation_error")
    assert_envelope(api.call("GET", "/api/groups", query={"name_prefix": "x" * 129}), 422, "validation_error")
    assert api.call("GET", "/api/groups", query={"name_prefix": "s"}, as_="member").status == 403


def test_one_grant_is_shown_with_the_users_email_wherever_it_stands(api: Api) -> None:
    make_agent("secret")
    api.ok("POST", "/api/agents/secret/grants", 201, body={"email": MEMBER_EMAIL, "effect": "deny"})
    grant = api.ok("GET", f"/api/agents/secret/grants/user:{MEMBER_ID}")
    assert (grant["principal"], grant["effect"], grant["email"]) == (f"user:{MEMBER_ID}", "deny", MEMBER_EMAIL)
    assert_envelope(api.call("GET", "/api/agents/secret/grants/group:sales"), 404, "not_found")
    assert_envelope(api.call("GET", "/api/agents/nope/grants/group:sales"), 404, "not_found")
    assert_envelope(api.call("GET", "/api/agents/secret/grants/robot:x"), 422, "validation_error")
    assert api.call("GET", f"/api/agents/secret/grants/user:{MEMBER_ID}", as_="member").status == 403
