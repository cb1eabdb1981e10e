"""The audience of an answer decides what retrieval may use (conversation.audience).

moto tables from the template, an embedded Qdrant store, and the Slack sandbox on loopback
answering conversations.info / conversations.members as Slack does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from insightmesh import resilience
from insightmesh.conversation.audience import AudienceRetriever, audience_for, private_follow_up_text
from insightmesh.conversation.requests import ConversationRequest, RequestKind
from insightmesh.directory.models import Group, Identity, Membership, User
from insightmesh.knowledge import store as store_module
from insightmesh.knowledge.base import ANYONE, SourceDocument
from insightmesh.knowledge.pipeline import ingest_documents
from insightmesh.slack import client as slack_client
from insightmesh_local.slack_sandbox import SlackSandbox

if TYPE_CHECKING:
    from tests.integration.conftest import DynamoCalls

TEAM = "T0AUDIENCE"
ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"  # Carol is in Slack, not (yet) in the directory
FACTS = {
    "alice-only": ("Alice's bonus code is ZEBRA.", ("user:alice@corp.example",)),
    "sales": ("The sales pipeline target is twelve million.", ("group:sales@corp.example",)),
    "company": ("The company holiday party is on the ninth of December.", ("domain:corp.example",)),
    "public": ("The public office address is 1 Main Street.", (ANYONE,)),
}


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path, tables: dict[str, str]) -> Iterator[SlackSandbox]:
    monkeypatch.setenv("QDRANT_PATH", str(tmp_path / "qdrant"))
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-audience")
    store_module.reset_for_tests()
    slack_client.reset_for_tests()
    resilience._breakers.clear()
    with SlackSandbox(port=0, team_id=TEAM) as sandbox:
        monkeypatch.setenv("SLACK_API_URL", sandbox.url)
        for slack_id, user_id, email in ((ALICE, "u-alice", "alice@corp.example"),
                                         (BOB, "u-bob", "bob@corp.example")):
            Identity(f"slack#{TEAM}:{slack_id}", provider_type="slack", provider_user_id=f"{TEAM}:{slack_id}",
                     user_id=user_id).save()
            User(user_id, email=email, display_name=slack_id).save()
        Group("gw-sales", email="sales@corp.example", source="google", external_id="g1").save()
        Membership("gw-sales", "u-alice").save()
        ingest_documents([SourceDocument(document_id=f"local:/{name}", source="local:/", title=name,
                                         mime_type="text/plain", content=text.encode(), acl=acl)
                          for name, (text, acl) in FACTS.items()])
        yield sandbox
    store_module.reset_for_tests()
    slack_client.reset_for_tests()
    resilience._breakers.clear()


def request(channel: str, *, user: str = ALICE, channel_type: str = "channel") -> ConversationRequest:
    return ConversationRequest(kind=RequestKind.MESSAGE, request_id=f"msg:{channel}:{user}", team_id=TEAM,
                               channel_id=channel, channel_type=channel_type, user_id=user, text="?")


def found(channel: str, question: str, *, user: str = ALICE, channel_type: str = "channel",
          private: bool = False) -> set[str]:
    retriever = AudienceRetriever(request(channel, user=user, channel_type=channel_type),
                                  "u-alice" if user == ALICE else "u-bob", private=private)
    return {passage.title for passage in retriever(question)}


ALL_QUESTION = "bonus code sales pipeline target company holiday party public office address"


def test_a_dm_uses_the_askers_own_access(world: SlackSandbox) -> None:
    world.set_channel("D0ALICE", [], kind="im", user=ALICE)
    assert found("D0ALICE", ALL_QUESTION, channel_type="im") == {"alice-only", "sales", "company", "public"}
    assert world.calls("conversations.info") == []  # message.im needs no lookup


def test_a_channel_uses_only_what_every_member_may_see(world: SlackSandbox) -> None:
    world.set_channel("C0GENERAL", [ALICE, BOB])
    assert found("C0GENERAL", ALL_QUESTION) == {"company", "public"}


def test_a_group_document_qualifies_once_every_member_is_in_the_group(world: SlackSandbox,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANNEL_AUDIENCE_CACHE_SECONDS", "0")
    world.set_channel("C0SALES", [ALICE, BOB], kind="private")
    assert "sales" not in found("C0SALES", "sales pipeline target")
    Membership("gw-sales", "u-bob").save()
    assert "sales" in found("C0SALES", "sales pipeline target")


def test_a_member_unknown_to_the_directory_counts_as_the_workspace(world: SlackSandbox) -> None:
    world.set_channel("C0MIXED", [ALICE, CAROL])
    assert found("C0MIXED", ALL_QUESTION) == {"company", "public"}


def test_a_slack_connect_channel_admits_only_what_anyone_may_see(world: SlackSandbox) -> None:
    world.set_channel("C0CONNECT", [ALICE, CAROL], ext_shared=True)
    assert found("C0CONNECT", ALL_QUESTION) == {"public"}


def test_a_group_dm_is_its_members(world: SlackSandbox) -> None:
    world.set_channel("G0MPIM", [ALICE, BOB], kind="mpim")
    assert found("G0MPIM", ALL_QUESTION, channel_type="mpim") == {"company", "public"}


def test_a_conversation_too_large_to_resolve_falls_back_to_workspace_documents(world: SlackSandbox,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANNEL_AUDIENCE_MAX_MEMBERS", "2")
    world.set_channel("C0HUGE", [ALICE, BOB, CAROL])
    audience = audience_for(request("C0HUGE"), "u-alice", private=False)
    assert audience.scope == "workspace"
    assert world.calls("conversations.members") == []  # the count alone decides: nothing paged
    assert found("C0HUGE", ALL_QUESTION) == {"company", "public"}


def test_members_are_paged(world: SlackSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    people = [f"U{n:08d}" for n in range(450)]
    world.set_channel("C0BIG", [ALICE, *people])
    monkeypatch.setenv("CHANNEL_AUDIENCE_MAX_MEMBERS", "1000")
    audience = audience_for(request("C0BIG"), "u-alice", private=False)
    assert audience.scope == "members" and len(audience.viewers) == 451  # everyone but the bot
    assert len(world.calls("conversations.members")) == 3  # 200 a page


def test_when_slack_cannot_say_who_is_there_only_public_documents_are_used(world: SlackSandbox) -> None:
    world.fail("conversations.info", "error", count=5, error="missing_scope")
    audience = audience_for(request("C0SECRET"), "u-alice", private=False)
    assert audience.scope == "public"
    assert found("C0SECRET", ALL_QUESTION) == {"public"}


def test_an_ephemeral_answer_uses_the_askers_access(world: SlackSandbox) -> None:
    assert "alice-only" in found("C0ANY", "bonus code", private=True)
    assert world.calls("conversations.info") == []


def test_members_and_viewers_are_cached(world: SlackSandbox, dynamo_calls: DynamoCalls) -> None:
    world.set_channel("C0CACHED", [ALICE, BOB])
    first = dynamo_calls.during(lambda: audience_for(request("C0CACHED"), "u-alice", private=False))
    assert first
    again = dynamo_calls.during(lambda: audience_for(request("C0CACHED"), "u-alice", private=False))
    assert again == ["BatchGetItem:-"]  # the members' identities; their viewers are cached
    assert len(world.calls("conversations.info")) == 1 and len(world.calls("conversations.members")) == 1


def test_directory_lookups_are_batched(world: SlackSandbox, dynamo_calls: DynamoCalls) -> None:
    """The members are resolved with BatchGetItems (identities, users, groups) and one Query of
    memberships per person (DynamoDB has no batch Query) — never a GetItem per member."""
    people = [f"U{n:08d}" for n in range(40)]
    for n, slack_id in enumerate(people):
        Identity(f"slack#{TEAM}:{slack_id}", provider_type="slack", provider_user_id=f"{TEAM}:{slack_id}",
                 user_id=f"u-{n}").save()
        User(f"u-{n}", email=f"person{n}@corp.example").save()
    world.set_channel("C0FORTY", [ALICE, *people])
    holder: list[Any] = []
    calls = Counter(call.split(":")[0] for call in dynamo_calls.during(
        lambda: holder.append(audience_for(request("C0FORTY"), "u-alice", private=False))))
    assert len(holder[0].viewers) == 41
    assert calls["GetItem"] == 0
    # The asker first (their user, their groups), then the members (identities, users; none of
    # them is in a group) — 4 BatchGetItems for 41 people.
    assert calls["BatchGetItem"] == 4
    assert calls["Query"] == 41  # memberships, one per person, run concurrently


def test_the_asker_is_told_privately_what_only_they_could_see(world: SlackSandbox) -> None:
    world.set_channel("C0GENERAL", [ALICE, BOB])
    retriever = AudienceRetriever(request("C0GENERAL"), "u-alice", private=False)
    assert "alice-only" not in {passage.title for passage in retriever("what is the bonus code?")}
    extras = retriever.private_extras()
    assert [passage.title for passage in extras] == ["alice-only"]
    text = private_follow_up_text(extras)
    assert "*alice-only*" in text and "ZEBRA" not in text and "direct message" in text

    world.set_channel("D0ALICE", [], kind="im", user=ALICE)
    in_dm = AudienceRetriever(request("D0ALICE", channel_type="im"), "u-alice", private=False)
    assert "alice-only" in {passage.title for passage in in_dm("what is the bonus code?")}
    assert in_dm.private_extras() == []
