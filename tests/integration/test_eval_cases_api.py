"""/api/eval-cases (admins): the evaluation set — created from an answered request or an explicit
question, changed, removed, each change audited; validated; a page is one Query, never a Scan."""

from __future__ import annotations

import os

from tests.integration.conftest import DynamoCalls
from tests.integration.test_admin_api import Api, assert_envelope, audit_entries, latest_audit
from tests.integration.test_admin_api import api as api  # the fixture
from tests.integration.test_answer_quality_eval import answered as answered_in

TEAM, CHANNEL, THREAD = "T0EC", "C0EC", "1796300000.000100"
EXPLICIT = {"question": "How many weeks of parental leave?", "scope": {"user_id": "u-alice"},
            "expected_titles": ["Parental leave"], "notes": "18 weeks at full pay"}


def answered(request_id: str, *, scope: str, asker: str | None = None,
             readers: list[list[str]] | None = None) -> None:
    answered_in(request_id, scope=scope, asker=asker, readers=readers, where=(TEAM, CHANNEL, THREAD),
                question="where is the Lisbon office?", passage=("doc-lisbon", "Lisbon office"))


def test_an_admin_adds_shows_changes_and_removes_a_case_each_change_audited(api: Api) -> None:
    case = api.ok("POST", "/api/eval-cases", 201, body=EXPLICIT)
    assert case["origin"] == "admin" and case["active"] is True and case["scope"] == {"user_id": "u-alice",
                                                                                       "principals": None}
    target = f"eval-case:{case['case_id']}"
    entry = latest_audit(target)
    assert entry.action == "eval_case.create" and entry.after["question"] == EXPLICIT["question"]
    assert api.ok("GET", f"/api/eval-cases/{case['case_id']}")["notes"] == "18 weeks at full pay"

    changed = api.ok("PATCH", f"/api/eval-cases/{case['case_id']}",
                     body={"active": False, "expected_ids": ["local:/handbook/parental-leave"]})
    assert changed["active"] is False and changed["expected_ids"] == ["local:/handbook/parental-leave"]
    assert changed["notes"] == "18 weeks at full pay" and changed["updated_by"]
    entry = latest_audit(target)
    assert entry.action == "eval_case.patch" and entry.before["active"] is True and entry.after["active"] is False
    assert [c["case_id"] for c in api.ok("GET", "/api/eval-cases", query={"active": "false"})["items"]] == \
        [case["case_id"]]
    assert api.ok("GET", "/api/eval-cases", query={"active": "true"})["items"] == []

    api.ok("DELETE", f"/api/eval-cases/{case['case_id']}", 204)
    assert_envelope(api.call("GET", f"/api/eval-cases/{case['case_id']}"), 404, "not_found")
    assert [e.action for e in audit_entries(target)] == ["eval_case.delete", "eval_case.patch", "eval_case.create"]
    assert_envelope(api.call("DELETE", f"/api/eval-cases/{case['case_id']}"), 404, "not_found")


def test_a_case_from_an_answered_request_copies_its_question_and_access(api: Api) -> None:
    readers = [["anyone", "user:a@example.com", "domain:example.com"], ["anyone", "domain:example.com"]]
    answered(f"msg:{TEAM}:{CHANNEL}:{THREAD}", scope="shared", readers=readers)
    case = api.ok("POST", "/api/eval-cases", 201, body={"request_id": f"msg:{TEAM}:{CHANNEL}:{THREAD}",
                                                        "expected_ids": ["doc-lisbon"]})
    assert case["question"] == "where is the Lisbon office?" and case["scope"]["principals"] == readers
    # A reply inside a thread: thread_ts names the thread the request item lives in.
    answered(f"msg:{TEAM}:{CHANNEL}:1796300000.000900", scope="private", asker="u-bob")
    case = api.ok("POST", "/api/eval-cases", 201, body={"request_id": f"msg:{TEAM}:{CHANNEL}:1796300000.000900",
                                                        "thread_ts": THREAD})
    assert case["scope"]["user_id"] == "u-bob"

    assert_envelope(api.call("POST", "/api/eval-cases", body={"request_id": f"msg:{TEAM}:{CHANNEL}:1.2"}),
                    404, "not_found")
    answered(f"msg:{TEAM}:{CHANNEL}:1796300000.000950", scope="private")  # its asker was not recorded
    result = api.call("POST", "/api/eval-cases", body={"request_id": f"msg:{TEAM}:{CHANNEL}:1796300000.000950",
                                                       "thread_ts": THREAD})
    assert_envelope(result, 422, "validation_error")
    assert result.body["error"]["details"][0]["loc"] == ["body", "scope"]
    case = api.ok("POST", "/api/eval-cases", 201, body={"request_id": f"msg:{TEAM}:{CHANNEL}:1796300000.000950",
                                                        "thread_ts": THREAD, "scope": {"user_id": "u-carol"}})
    assert case["scope"]["user_id"] == "u-carol"


def test_invalid_cases_are_refused_and_nothing_is_written(api: Api) -> None:
    refused = [
        {**EXPLICIT, "request_id": "msg:T:C:1.1"},  # both sources
        {"question": "scope?"},  # a question without its scope
        {**EXPLICIT, "scope": {"user_id": "u-1", "principals": [["anyone"]]}},  # two scopes
        {**EXPLICIT, "scope": {"principals": [[]]}},  # a reader without principals
        {**EXPLICIT, "colour": "blue"},  # unknown field
        {**EXPLICIT, "question": "x" * 4001},
        {**EXPLICIT, "expected_ids": ["d"] * 21},
        {"thread_ts": THREAD, **EXPLICIT},  # thread_ts without request_id
    ]
    for body in refused:
        assert_envelope(api.call("POST", "/api/eval-cases", body=body), 422, "validation_error")
    case = api.ok("POST", "/api/eval-cases", 201, body=EXPLICIT)
    assert_envelope(api.call("PATCH", f"/api/eval-cases/{case['case_id']}", body={"question": "no"}), 422,
                    "validation_error")
    assert_envelope(api.call("PATCH", "/api/eval-cases/nope", body={"active": False}), 404, "not_found")
    assert len(api.ok("GET", "/api/eval-cases")["items"]) == 1


def test_members_are_refused_and_the_refusal_audited(api: Api) -> None:
    result = api.call("GET", "/api/eval-cases", as_="member")
    assert result.status == 403 and result.body["error"]["code"] == "forbidden"
    assert_envelope(api.call("POST", "/api/eval-cases", as_="member", body=EXPLICIT), 403, "forbidden")
    assert latest_audit("eval-case:*").outcome == "denied"


def test_pages_follow_the_cursor_one_query_each_never_a_scan(api: Api, dynamo_calls: DynamoCalls) -> None:
    created = [api.ok("POST", "/api/eval-cases", 201, body={**EXPLICIT, "question": f"question {n}?"})["case_id"]
               for n in range(5)]
    dynamo_calls.start()
    first = api.ok("GET", "/api/eval-cases", query={"limit": "3"})
    dynamo_calls.stop()
    table = os.environ["EVAL_TABLE"]
    assert [call for call in dynamo_calls.calls if call.endswith(table)] == [f"Query:{table}"]
    second = api.ok("GET", "/api/eval-cases", query={"limit": "3", "cursor": first["next_cursor"]})
    listed = [c["case_id"] for c in first["items"] + second["items"]]
    assert listed == list(reversed(created)) and second["next_cursor"] is None
    assert_envelope(api.call("GET", "/api/eval-cases", query={"active": "true", "cursor": first["next_cursor"]}),
                    422, "validation_error")
