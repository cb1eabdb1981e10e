"""Opaque signed cursors, page parameters and pages (insightmesh.api.pagination)."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import BaseModel, ValidationError

from insightmesh.api.errors import ValidationFailedError
from insightmesh.api.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Page,
    PageParams,
    decode_cursor,
    encode_cursor,
    is_dynamo_key,
    key_cursor,
    start_key,
)
from insightmesh.config import get_settings

KEY = {"group_name": {"S": "all_users"}, "user_id": {"S": "3f0c9a52-8d7e-4f0b-9a57-2f1e6c4b8d21"}}


def refused(cursor: str, scope: str = "users") -> ValidationFailedError:
    with pytest.raises(ValidationFailedError) as caught:
        start_key(cursor, scope=scope)
    error = caught.value
    assert (error.status, error.code) == (422, "validation_error")
    assert error.details == [{"loc": ["query", "cursor"], "msg": "the cursor is not valid", "type": "value_error"}]
    return error


def test_a_cursor_round_trips_its_key():
    cursor = key_cursor(KEY, scope="users")
    assert cursor is not None
    assert start_key(cursor, scope="users") == KEY


def test_no_key_no_cursor_and_no_cursor_no_key():
    assert key_cursor(None, scope="users") is None
    assert start_key(None, scope="users") is None


def test_a_cursor_is_url_safe_and_opaque():
    cursor = key_cursor(KEY, scope="users")
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert cursor.count(".") == 1
    assert "all_users" not in cursor  # encoded, not a readable key


def _repack(cursor: str, change) -> str:
    payload, mac = cursor.split(".")
    position = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    change(position)
    forged = base64.urlsafe_b64encode(json.dumps(position).encode()).rstrip(b"=").decode()
    return f"{forged}.{mac}"


def test_a_changed_key_is_refused():
    cursor = key_cursor(KEY, scope="users")

    def point_elsewhere(position):
        position["k"]["group_name"]["S"] = "admins"

    refused(_repack(cursor, point_elsewhere))


def test_a_changed_signature_is_refused():
    cursor = key_cursor(KEY, scope="users")
    payload, mac = cursor.split(".")
    refused(f"{payload}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}")
    refused(payload)  # no signature at all
    refused(f"{payload}.")


def test_a_cursor_of_another_list_is_refused():
    refused(key_cursor(KEY, scope="members|sales"), scope="users")


def test_a_cursor_signed_with_another_key_is_refused(monkeypatch):
    cursor = key_cursor(KEY, scope="users")
    monkeypatch.setenv("SECRET_KEY", "another-secret-key-of-at-least-32-characters")
    get_settings.cache_clear()
    refused(cursor)


@pytest.mark.parametrize("garbage", ["", "x", "not-base64!.sig", "....", "%%%.%%%", "x" * 5000])
def test_garbage_is_refused(garbage):
    refused(garbage)


def test_a_signed_position_that_is_not_a_key_is_refused():
    for position in ({"k": "a string"}, {"k": {"a": {"X": "1"}}}, {"k": {"a": {"S": 1}}}, {"other": 1}, {"k": {}}):
        refused(encode_cursor(position, scope="users"))


def test_positions_that_are_not_objects_are_refused():
    cursor = encode_cursor({"k": KEY}, scope="users")
    payload, mac = cursor.split(".")
    assert decode_cursor(cursor, scope="users") == {"k": KEY}
    with pytest.raises(ValidationFailedError):
        decode_cursor(f"{payload}x.{mac}", scope="users")


def test_dynamo_keys():
    assert is_dynamo_key(KEY)
    assert is_dynamo_key({"n": {"N": "1"}})
    assert not is_dynamo_key({})
    assert not is_dynamo_key({"a": {"S": "1", "N": "2"}})
    assert not is_dynamo_key({f"k{n}": {"S": "x"} for n in range(5)})
    assert not is_dynamo_key(["S", "x"])


def test_page_params_default_and_cap():
    assert PageParams().limit == DEFAULT_LIMIT == 50
    assert PageParams(limit=MAX_LIMIT).limit == 100
    for limit in (0, -1, MAX_LIMIT + 1):
        with pytest.raises(ValidationError):
            PageParams(limit=limit)
    with pytest.raises(ValidationError):
        PageParams(cursor="")
    with pytest.raises(ValidationError):
        PageParams(cursor="x" * 3000)
    with pytest.raises(ValidationError):
        PageParams(offset=3)


class Item(BaseModel):
    name: str


def test_a_page_serialises_items_and_cursor():
    page = Page[Item](items=[Item(name="a")], next_cursor="abc.def")
    assert page.model_dump(mode="json") == {"items": [{"name": "a"}], "next_cursor": "abc.def"}
    assert Page[Item](items=[]).next_cursor is None
    schema = Page[Item].model_json_schema()
    assert set(schema["properties"]) == {"items", "next_cursor"}
