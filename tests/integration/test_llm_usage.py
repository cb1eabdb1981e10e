"""Token usage accounting per agent and per user per day (insightmesh.llm.usage) on moto DynamoDB."""

from __future__ import annotations

import io
import json
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto.dynamodb.models import DynamoDBBackend

import insightmesh.llm
from insightmesh.llm import ChatMessage, OfflineClient, Usage
from insightmesh.llm import usage as usage_module
from insightmesh.observability import get_logger
from tests.integration.conftest import items as table_items

WHEN = datetime(2025, 10, 21, 9, 30, tzinfo=UTC)


@pytest.fixture
def usage(tables: dict[str, str]) -> ModuleType:
    usage_module.forget_indexed()  # a fresh table: nothing indexed yet
    return usage_module


DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def stored_items(prefixes: tuple[str, ...] = ("agent#", "user#")) -> dict[tuple[str, str], dict[str, Any]]:
    """The day counters of the subjects with ``prefixes`` (agent and user: what these tests record)."""
    items = table_items("USAGE_TABLE")
    return {
        (item["subject"]["S"], item["period"]["S"]): {
            name: int(item[name]["N"]) for name in ("prompt_tokens", "completion_tokens", "calls")
        }
        for item in items if item["subject"]["S"].startswith(prefixes) and DAY.match(item["period"]["S"])
    }


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    logger = get_logger()
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        yield stream
    finally:
        logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]


def test_a_completion_is_added_to_its_agent_and_its_user(usage: ModuleType) -> None:
    usage.record_usage(agent="help", user_id="U123", usage=Usage(120, 30), when=WHEN)

    assert stored_items() == {
        ("agent#help", "2025-10-21"): {"prompt_tokens": 120, "completion_tokens": 30, "calls": 1},
        ("user#U123", "2025-10-21"): {"prompt_tokens": 120, "completion_tokens": 30, "calls": 1},
    }


def test_counters_accumulate_per_subject_and_day(usage: ModuleType) -> None:
    usage.record_usage(agent="help", user_id="U1", usage=Usage(100, 10), when=WHEN)
    usage.record_usage(agent="help", user_id="U2", usage=Usage(50, 5), when=WHEN)
    usage.record_usage(agent="meddic", user_id="U1", usage=Usage(7, 3), when=WHEN)
    usage.record_usage(agent="help", user_id="U1", usage=Usage(1, 1), when=WHEN + timedelta(days=1))

    items = stored_items()
    assert items[("agent#help", "2025-10-21")] == {"prompt_tokens": 150, "completion_tokens": 15, "calls": 2}
    assert items[("agent#meddic", "2025-10-21")] == {"prompt_tokens": 7, "completion_tokens": 3, "calls": 1}
    assert items[("user#U1", "2025-10-21")] == {"prompt_tokens": 107, "completion_tokens": 13, "calls": 2}
    assert items[("user#U2", "2025-10-21")] == {"prompt_tokens": 50, "completion_tokens": 5, "calls": 1}
    assert items[("user#U1", "2025-10-22")] == {"prompt_tokens": 1, "completion_tokens": 1, "calls": 1}
    assert len(items) == 6


def test_the_period_is_the_utc_day(usage: ModuleType) -> None:
    evening_in_new_york = datetime(2025, 10, 21, 21, 0, tzinfo=timezone(timedelta(hours=-4)))
    naive = datetime(2025, 10, 23, 23, 59, 59)  # taken as UTC

    usage.record_usage(agent="help", user_id="U1", usage=Usage(1, 1), when=evening_in_new_york)
    usage.record_usage(agent="help", user_id="U1", usage=Usage(1, 1), when=naive)

    assert {period for _, period in stored_items()} == {"2025-10-22", "2025-10-23"}
    assert usage.period_of(WHEN) == "2025-10-21"


def test_without_when_today_is_used(usage: ModuleType) -> None:
    before = datetime.now(UTC).strftime("%Y-%m-%d")
    usage.record_usage(agent="help", user_id="U1", usage=Usage(1, 1))
    after = datetime.now(UTC).strftime("%Y-%m-%d")

    periods = {period for _, period in stored_items()}
    assert len(periods) == 1
    assert periods <= {before, after}  # a run across midnight may see either day


def test_usage_for_reads_one_subject_and_day(usage: ModuleType) -> None:
    usage.record_usage(agent="help", user_id="U1", usage=Usage(40, 2), when=WHEN)

    record = usage.usage_for("agent#help", "2025-10-21")
    assert (record.prompt_tokens, record.completion_tokens, record.calls) == (40, 2, 1)
    assert record.total_tokens == 42
    assert usage.usage_for("agent#help", "2025-10-20") is None
    assert usage.usage_for("agent#nobody", "2025-10-21") is None


def test_a_month_is_one_query_on_the_subject(usage: ModuleType) -> None:
    for day in range(3):
        usage.record_usage(agent="help", user_id="U1", usage=Usage(10, 1), when=WHEN + timedelta(days=day * 6))
    record = usage.UsageRecord

    october = list(record.query("user#U1", record.period.startswith("2025-10-")))
    from_the_22nd = [item for item in record.query("user#U1", record.period.between("2025-10-22", "2025-11-30"))
                     if DAY.match(item.period)]  # the month "2025-11" sorts among the days

    assert [item.period for item in october] == ["2025-10-21", "2025-10-27"]
    assert [item.period for item in from_the_22nd] == ["2025-10-27", "2025-11-02"]
    assert sum(int(item.prompt_tokens) for item in october) == 20
    assert int(record.get("user#U1", "2025-10").prompt_tokens) == 20  # the month's own counter agrees


def atomic_moto_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each UpdateItem atomically; moto's in-process backend does not (it reads,
    changes and writes the item unlocked), so a loaded machine could lose one of its own ADDs.
    Serialising moto's UpdateItem makes it as atomic as DynamoDB; the code under test still races freely."""
    lock = threading.Lock()
    update_item = DynamoDBBackend.update_item

    def atomic_update_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return update_item(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "update_item", atomic_update_item)


def test_concurrent_workers_lose_no_increment(usage: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    atomic_moto_updates(monkeypatch)

    def work() -> None:
        for _ in range(5):
            usage.record_usage(agent="help", user_id="U1", usage=Usage(3, 2), when=WHEN)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert stored_items()[("agent#help", "2025-10-21")] == {"prompt_tokens": 60, "completion_tokens": 40, "calls": 20}


def test_a_storage_failure_is_logged_never_raised(usage: ModuleType, log_stream: io.StringIO) -> None:
    boto3.client("dynamodb").delete_table(TableName=os.environ["USAGE_TABLE"])

    usage.record_usage(agent="help", user_id="U-secret-person", usage=Usage(1, 1), when=WHEN)  # does not raise

    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["llm usage not recorded; storage unavailable"]  # one per call
    assert lines[0]["subject_kinds"] == ["agent", "index#agent", "index#user", "request", "user"]
    assert lines[0]["failed"] == lines[0]["writes"] == 2 * 3 + 2 * 3 + 1  # counters, index items, the record
    assert all(line["level"] == "WARNING" for line in lines)
    assert "U-secret-person" not in log_stream.getvalue()


def test_a_missing_subject_is_skipped_and_the_other_recorded(usage: ModuleType, log_stream: io.StringIO) -> None:
    usage.record_usage(agent="help", user_id="", usage=Usage(5, 5), when=WHEN)

    assert list(stored_items()) == [("agent#help", "2025-10-21")]
    assert json.loads(log_stream.getvalue().splitlines()[0])["message"] == "llm usage not recorded: no subject"


def test_a_conversation_turn_end_to_end_through_the_package_api(usage: ModuleType) -> None:
    # What the conversation worker does: complete with the configured client, then account for it.
    completion = OfflineClient().complete([ChatMessage.user("How do I reset my VPN token?")], system="Be brief.")
    insightmesh.llm.record_usage(agent="help", user_id="U42", usage=completion.usage, when=WHEN)

    record = insightmesh.llm.usage_for("user#U42", "2025-10-21")
    assert record is not None
    assert isinstance(record, insightmesh.llm.UsageRecord)
    assert (record.prompt_tokens, record.completion_tokens, record.calls) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        1,
    )
