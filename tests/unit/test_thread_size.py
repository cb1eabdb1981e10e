"""Thread state within DynamoDB's 400 KB: the item measured as DynamoDB measures it, JSON stored as
UTF-8, and the budgets of conversation.threads (no network)."""

from __future__ import annotations

import json

from pynamodb.attributes import JSONAttribute

from insightmesh.conversation import threads
from insightmesh.conversation.models import CompactJSONAttribute, item_size


def test_item_size_follows_dynamodbs_rules():
    # Strings and names in UTF-8 bytes; numbers 1 byte per two significant digits + 1;
    # booleans and nulls 1 byte; lists and maps 3 bytes + 1 per element.
    assert item_size({"pk": {"S": "abc"}}) == 2 + 3
    assert item_size({"t": {"S": "é漢😀"}}) == 1 + (2 + 3 + 4)
    assert item_size({"n": {"N": "12345"}}) == 1 + 3 + 1
    assert item_size({"n": {"N": "0.00120"}}) == 1 + 1 + 1  # leading and trailing zeroes trimmed
    assert item_size({"b": {"BOOL": True}, "z": {"NULL": True}}) == 2 + 2
    assert item_size({"l": {"L": [{"S": "ab"}, {"N": "7"}]}}) == 1 + 3 + (1 + 2) + (1 + 2)
    assert item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + (1 + 1 + 1)


def test_json_is_stored_as_utf8_not_escapes():
    text = "Привет, 世界 😀" * 100
    escaped = JSONAttribute().serialize({"text": text})
    compact = CompactJSONAttribute().serialize({"text": text})
    assert len(escaped.encode()) > 2 * len(compact.encode())
    assert json.loads(compact) == {"text": text} == CompactJSONAttribute().deserialize(escaped)


def test_history_keeps_the_latest_turns_within_its_budget():
    turn = [{"role": "user", "content": "ü" * 3900}, {"role": "assistant", "content": "ß" * 3900}]
    state = threads.ThreadState(key="k", history=[dict(m) for m in turn * 40])
    state.history[-1] = {"role": "assistant", "content": "the latest"}

    threads.bound_state(state)

    assert len(json.dumps(state.history, ensure_ascii=False).encode()) <= threads.HISTORY_BUDGET_BYTES
    assert state.history[-1]["content"] == "the latest" and len(state.history) % 2 == 0


def test_agent_state_loses_its_oldest_notes_first():
    notes = [f"note {i} " + "Ω" * 2000 for i in range(200)]
    state = threads.ThreadState(key="k", agent_state={"meddic": {"notes": list(notes), "known": {"metrics": "20 h"}}})

    threads.bound_state(state)

    kept = state.agent_state["meddic"]
    assert len(json.dumps(kept, ensure_ascii=False).encode()) <= threads.AGENT_STATE_BUDGET_BYTES
    assert kept["notes"][-1] == notes[-1] and kept["notes"][0] != notes[0]
    assert kept["known"] == {"metrics": "20 h"}


def test_a_single_huge_string_is_cut_on_a_character_boundary():
    value = {"text": "😀" * 100_000}
    threads.shrink_json(value, 1000)
    assert len(json.dumps(value, ensure_ascii=False).encode()) <= 1000
    assert set(value["text"]) == {"😀"}


def test_files_keep_to_the_thread_budget_dropping_the_oldest():
    files = [{"id": f"F{i}", "name": f"f{i}.txt", "text": "ж" * 150_000} for i in range(5)]

    threads.bound_files(files)

    assert all(len(f["text"].encode()) <= threads.MAX_FILE_BYTES for f in files)
    assert sum(len(f["text"].encode()) for f in files) <= threads.MAX_THREAD_FILE_BYTES
    assert files[-1]["id"] == "F4" and files[0]["id"] != "F0"
