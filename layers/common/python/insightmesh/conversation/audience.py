"""Who will read an answer decides what it may use.

Every retrieval made for a reply goes through :class:`AudienceRetriever`, the ``retrieve``
callback that every agent gets, so no agent can reach past the audience:

* **A DM with the bot**, or an answer only the asker sees (an ephemeral slash-command answer):
  the asker's access.
* **A channel, private channel or group DM:** only documents that *every* member may see. The
  members come from ``conversations.members`` (:mod:`insightmesh.slack.conversations`); each is
  resolved in the directory (identities, then users and their groups, in batches). Members and
  viewers are cached for ``CHANNEL_AUDIENCE_CACHE_SECONDS`` (60). A member the directory does not
  know (a person who never used InsightMesh and was not synced, or another app) counts as a member of the workspace's
  domain — the asker's e-mail domain — and nothing more; in a conversation shared with another
  organisation (Slack Connect) not even that, so only ``anyone`` documents qualify for them.
* **A conversation larger than** ``CHANNEL_AUDIENCE_MAX_MEMBERS`` (default 100) is not resolved:
  documents shared with ``anyone`` or with the workspace's domain only.
* **When Slack cannot say who is there** (an error, the breaker open): ``anyone`` only — fail
  closed.

What the asker alone could have seen is never used in a shared place. After a shared answer,
:meth:`AudienceRetriever.private_extras` looks again with the asker's own access; the worker tells
the asker privately (an ephemeral message naming the documents, never their content) that more
is available in a DM. Thread memory, summaries and agent state hold only what was shown in the
thread, so a later reader's turn never carries one person's private access either.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Final

from slack_sdk.errors import SlackApiError

from insightmesh.conversation import channel_settings
from insightmesh.conversation.attachments import knowledge_base_has_documents
from insightmesh.conversation.requests import ConversationRequest, RequestKind
from insightmesh.knowledge.base import Audience, Passage, Viewer
from insightmesh.observability import get_logger
from insightmesh.resilience import CircuitOpenError
from insightmesh.slack.client import SlackNotConfiguredError, bot_identity

DEFAULT_MAX_MEMBERS: Final = 100
DEFAULT_CACHE_SECONDS: Final = 60.0
MAX_FOLLOW_UP_QUESTIONS: Final = 2

logger = get_logger("conversation_worker")

_viewers: dict[str, tuple[float, Viewer]] = {}
_viewers_lock = threading.Lock()


def _setting(name: str, default: float, minimum: float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        number = float(value) if value else default
    except ValueError as error:
        raise ValueError(f"{name} must be a number, not {value!r}") from error
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}")
    return number


def max_members() -> int:
    """``CHANNEL_AUDIENCE_MAX_MEMBERS``: the largest conversation whose members are resolved."""
    return int(_setting("CHANNEL_AUDIENCE_MAX_MEMBERS", DEFAULT_MAX_MEMBERS, 1))


def cache_seconds() -> float:
    """``CHANNEL_AUDIENCE_CACHE_SECONDS``: how long members and viewers are remembered (0: not)."""
    return _setting("CHANNEL_AUDIENCE_CACHE_SECONDS", DEFAULT_CACHE_SECONDS, 0)


def _search(question: str, who: Viewer | Audience, sources: Sequence[str] | None = None) -> list[Passage]:
    """The knowledge base searched for ``who``, tuned by ``KNOWLEDGE_TOP_K`` (5),
    ``KNOWLEDGE_SCORE_THRESHOLD`` (unset) and ``KNOWLEDGE_PER_DOCUMENT`` (2); ``sources``: only
    documents of these sources (a channel's settings)."""
    from insightmesh.knowledge.retrieval import retrieve  # imports the vector store's client

    threshold = os.environ.get("KNOWLEDGE_SCORE_THRESHOLD", "").strip()
    return retrieve(question, who, k=int(os.environ.get("KNOWLEDGE_TOP_K") or 5),
                    score_threshold=float(threshold) if threshold else None,
                    per_document=int(os.environ.get("KNOWLEDGE_PER_DOCUMENT") or 2), sources=sources)


def cached_viewers(user_ids: Sequence[str]) -> dict[str, Viewer]:
    """Viewers of directory users, each remembered for :func:`cache_seconds`."""
    from insightmesh.knowledge.retrieval import viewers_for_users

    now = time.monotonic()
    with _viewers_lock:
        known = {user_id: entry[1] for user_id in user_ids
                 if (entry := _viewers.get(user_id)) is not None and entry[0] > now}
    missing = [user_id for user_id in dict.fromkeys(user_ids) if user_id not in known]
    if missing:
        fetched = viewers_for_users(missing)
        with _viewers_lock:
            for user_id, viewer in fetched.items():
                _viewers[user_id] = (now + cache_seconds(), viewer)
        known.update(fetched)
    return known


def audience_for(request: ConversationRequest, asker_user_id: str, *, private: bool) -> Audience:
    """Who reads the reply to ``request`` (see the module docstring)."""
    asker = cached_viewers([asker_user_id]).get(asker_user_id) or Viewer(email=None)
    if private or (request.kind is RequestKind.MESSAGE and request.channel_type == "im"):
        return Audience.of(asker)  # message.im events come only from the bot's own DMs
    from insightmesh.slack.conversations import conversation_readers

    try:
        readers = conversation_readers(request.channel_id, max_members=max_members(), ttl=cache_seconds())
        bot_user = bot_identity().user_id
    except (SlackApiError, CircuitOpenError, SlackNotConfiguredError) as error:
        logger.warning("conversation members unknown; answering from what anyone may see",
                       extra={"channel": request.channel_id, "error": type(error).__name__})
        return Audience((Viewer(email=None),), "public")
    if readers.kind == "im" and readers.im_user == request.user_id:
        return Audience.of(asker)
    workspace = Viewer(email=None, domains=() if readers.externally_shared or not asker.domain else (asker.domain,))
    if readers.members is None:
        logger.info("conversation too large to resolve; workspace-wide documents only",
                    extra={"channel": request.channel_id, "members": readers.num_members})
        return Audience((workspace,), "workspace")
    from insightmesh.directory.users import users_for_slack_ids

    people = [member for member in dict.fromkeys([*readers.members, request.user_id]) if member != bot_user]
    directory_ids = users_for_slack_ids(request.team_id, people)
    viewers = cached_viewers(list(directory_ids.values()))
    return Audience(tuple(viewers.get(directory_ids.get(member, ""), workspace) for member in people), "members")


class AudienceRetriever:
    """``retrieve(question)`` for an agent, with the access of everyone who will read the reply.

    The audience is worked out on the first search (a turn without a knowledge base, or without a
    search, costs nothing). Searching must not fail a reply: an error answers without passages.
    """

    def __init__(self, request: ConversationRequest, asker_user_id: str, *, private: bool) -> None:
        self.request, self.asker_user_id, self.private = request, asker_user_id, private
        self._audience: Audience | None = None
        self.questions: list[str] = []
        self.shown: set[str] = set()  # document ids of the passages given to the agent
        self.titles: dict[str, str] = {}  # their titles, by document id (conversation.provenance)

    @property
    def audience(self) -> Audience:
        if self._audience is None:
            self._audience = audience_for(self.request, self.asker_user_id, private=self.private)
        return self._audience

    def __call__(self, question: str) -> Sequence[Passage]:
        if not question.strip():
            return ()
        try:
            if not knowledge_base_has_documents():
                return ()
            audience = self.audience
            # The channel's knowledge sources, when an admin restricted them (cached settings).
            passages = _search(question, audience, channel_settings.for_request(self.request).knowledge_sources)
        except Exception as error:  # noqa: BLE001 - search failing must not fail the answer
            logger.warning("knowledge search failed; answering without it",
                           extra={"error": type(error).__name__, "detail": str(error)[:300]})
            return ()
        self.questions.append(question)
        self.shown.update(passage.document_id for passage in passages)
        self.titles.update((passage.document_id, passage.title) for passage in passages)
        logger.info("knowledge searched", extra={"audience": audience.scope, "readers": len(audience.viewers),
                                                 "found": len(passages)})
        return passages

    @property
    def scope(self) -> str:
        """``private`` or ``shared`` once searched (whose access decided), else ``none``."""
        if self._audience is None:
            return "none"
        return "private" if self._audience.is_private else "shared"

    def private_extras(self) -> list[Passage]:
        """Documents the asker alone may see that would have answered this turn's questions (one
        passage per document), after a shared answer; empty for a private one."""
        if self._audience is None or self._audience.is_private or not self.questions:
            return []
        asker = cached_viewers([self.asker_user_id]).get(self.asker_user_id)
        if asker is None:
            return []
        extras: dict[str, Passage] = {}
        for question in self.questions[:MAX_FOLLOW_UP_QUESTIONS]:
            try:
                found = _search(question, asker)
            except Exception as error:  # noqa: BLE001 - the follow-up is optional; the answer is posted
                logger.warning("private follow-up search failed", extra={"error": type(error).__name__})
                return []
            for passage in found:
                if passage.document_id not in self.shown:
                    extras.setdefault(passage.document_id, passage)
        return list(extras.values())


def private_follow_up_text(extras: Sequence[Passage]) -> str:
    titles = ", ".join(f"*{passage.title}*" for passage in extras[:5])
    more = f" and {len(extras) - 5} more" if len(extras) > 5 else ""
    return (f"Only you can see {len(extras)} more document(s) that may help here: {titles}{more}. "
            "I left them out because not everyone in this conversation may read them — "
            "ask me in a direct message to use them.")


def reset_for_tests() -> None:
    with _viewers_lock:
        _viewers.clear()
