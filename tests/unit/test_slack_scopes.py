"""Every Slack Web API method the layer calls is granted by the app manifest.

The layer's source is scanned (``ast``) for calls of slack_sdk ``WebClient`` methods
(``client.chat_postMessage(...)``, ``c.conversations_members(...)``) and for ``api_call("x.y")``;
each method must have an entry in ``insightmesh.slack.scopes`` and every scope it names must be in
``infra/slack-app-manifest.yaml``. A new call without an entry fails here, before a real workspace
answers ``missing_scope``.
"""

from __future__ import annotations

import ast
import inspect
import re
from functools import cache
from pathlib import Path

import pytest
import yaml
from slack_sdk import WebClient

from insightmesh.slack import scopes

ROOT = Path(__file__).parents[2]
LAYER = ROOT / "layers" / "common" / "python" / "insightmesh"
MANIFEST = ROOT / "infra" / "slack-app-manifest.yaml"
_API_CALL = re.compile(r"api_call\(\s*\"([a-zA-Z.]+)\"")
_SELF_CALL = re.compile(r"self\.([a-zA-Z_]+)\(")


@cache
def webclient_methods() -> dict[str, str]:
    """slack_sdk's WebClient method name → the Web API method it calls (``chat_postMessage`` →
    ``chat.postMessage``), read from slack_sdk's own source."""
    found: dict[str, str] = {}
    for name, member in inspect.getmembers(WebClient, inspect.isfunction):
        if name.startswith("_") or name == "api_call":
            continue
        called = _API_CALL.findall(inspect.getsource(member))
        if len(called) == 1:
            found[name] = called[0]
    return found


@cache
def composite_methods() -> dict[str, frozenset[str]]:
    """slack_sdk's helpers that make several Web API calls through its own methods
    (``files_upload_v2`` → files.getUploadURLExternal and files.completeUploadExternal)."""
    single = webclient_methods()
    found: dict[str, frozenset[str]] = {}
    for name, member in inspect.getmembers(WebClient, inspect.isfunction):
        if name.startswith("_") or name in single or name == "api_call":
            continue
        called = frozenset(single[callee] for callee in _SELF_CALL.findall(inspect.getsource(member))
                           if callee in single)
        if called:
            found[name] = called
    return found


def web_api_calls(source: str) -> set[str]:
    """The Web API methods a module's source calls through a WebClient."""
    methods = webclient_methods()
    composites = composite_methods()
    called: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr in methods:
            called.add(methods[node.func.attr])
        elif node.func.attr in composites:
            called |= composites[node.func.attr]
        elif node.func.attr == "api_call" and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            called.add(node.args[0].value)
    return called


def layer_calls() -> dict[str, set[str]]:
    """Web API method → the layer files that call it."""
    where: dict[str, set[str]] = {}
    for path in sorted(LAYER.rglob("*.py")):
        for method in web_api_calls(path.read_text()):
            where.setdefault(method, set()).add(str(path.relative_to(ROOT)))
    return where


def manifest() -> tuple[set[str], set[str]]:
    data = yaml.safe_load(MANIFEST.read_text())
    bot_scopes = set(data["oauth_config"]["scopes"]["bot"])
    events = set(data["settings"]["event_subscriptions"]["bot_events"])
    return bot_scopes, events


def uncovered(calls: dict[str, set[str]], granted: set[str]) -> list[str]:
    problems = []
    for method, files in sorted(calls.items()):
        if method not in scopes.METHOD_SCOPES:
            problems.append(f"{method} (called in {', '.join(sorted(files))}) has no entry in slack/scopes.py")
            continue
        missing = scopes.scopes_for(method) - granted
        if missing:
            problems.append(f"{method} needs {', '.join(sorted(missing))}, which the manifest does not grant")
    return problems


def test_the_scanner_knows_slack_sdks_methods():
    methods = webclient_methods()
    assert methods["chat_postMessage"] == "chat.postMessage"
    assert methods["conversations_members"] == "conversations.members"
    assert methods["users_list"] == "users.list"


def test_the_scanner_finds_web_api_calls_whatever_the_client_is_called():
    source = ("call_slack(lambda c: c.conversations_members(channel=x, cursor=y))\n"
              "client.chat_postEphemeral(channel=x, user=u, text=t)\n"
              "web.api_call('bots.info', params={})\n"
              "store.create_collection('kb')\n")
    assert web_api_calls(source) == {"conversations.members", "chat.postEphemeral", "bots.info"}


def test_files_upload_v2_is_seen_as_the_two_calls_it_makes():
    assert web_api_calls("call_slack(lambda c: c.files_upload_v2(channel=x, content=b))") == {
        "files.getUploadURLExternal", "files.completeUploadExternal"}
    assert {"files.getUploadURLExternal", "files.completeUploadExternal"} <= set(layer_calls())


def test_a_new_call_without_a_table_entry_is_reported():
    granted, _events = manifest()
    calls = {"conversations.kick": {"somewhere.py"}, "chat.postMessage": {"worker.py"}}
    assert uncovered(calls, granted) == [
        "conversations.kick (called in somewhere.py) has no entry in slack/scopes.py"]


def test_a_scope_the_manifest_lacks_is_reported():
    granted, _events = manifest()
    assert uncovered({"conversations.members": {"x.py"}}, granted - {"mpim:read"}) == [
        "conversations.members needs mpim:read, which the manifest does not grant"]


def test_the_layer_calls_slack_and_the_scan_sees_it():
    calls = layer_calls()
    assert {"chat.postMessage", "chat.update", "users.info", "users.list"} <= set(calls)


def test_every_web_api_method_the_layer_calls_is_granted_by_the_manifest():
    granted, _events = manifest()
    assert uncovered(layer_calls(), granted) == []


def test_members_of_every_conversation_kind_can_be_listed():
    # conversations.members (who may read an answer, issue 10 §1) in channels, private channels,
    # DMs and group DMs.
    granted, _events = manifest()
    assert scopes.scopes_for("conversations.members") == {"channels:read", "groups:read", "im:read", "mpim:read"}
    assert scopes.scopes_for("conversations.members") <= granted


def test_shared_files_can_be_downloaded():
    granted, _events = manifest()
    assert "files:read" in scopes.FILE_DOWNLOAD_SCOPES
    assert scopes.FILE_DOWNLOAD_SCOPES <= granted


def test_every_subscribed_event_has_its_scope_and_group_dms_are_subscribed():
    granted, events = manifest()
    assert {"app_mention", "message.im", "message.channels", "message.groups", "message.mpim"} <= events
    assert {"app_uninstalled", "tokens_revoked"} <= events  # the workspace is marked inactive on uninstall
    for event in events:
        assert event in scopes.EVENT_SCOPES, f"{event} has no entry in slack/scopes.py"
        assert scopes.EVENT_SCOPES[event] <= granted, event


def test_an_unknown_method_is_never_taken_as_needing_nothing():
    with pytest.raises(scopes.UnknownSlackMethodError, match=r"admin\.users\.remove"):
        scopes.scopes_for("admin.users.remove")
