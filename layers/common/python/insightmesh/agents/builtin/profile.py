"""``profile``: deep research on a company or a person, run by the durable research function.

"profile Acme Corp", "research Jane Doe at Acme", "@InsightMesh profile Acme Corp": the router
(``conversation.routing``) finds this agent by its first word, its name or an alias, and hands it
the rest; the subject is that rest, with any leading verb or filler left over ("profile of",
"research on") stripped — "at"/"from" stay, they are part of who the person is. The agent starts a
research run (``AgentContext.start_research``: the worker records it and invokes the research
function) and answers at once, so the thread's queue is never held for the minutes a run takes;
the plan, the progress and the report arrive in the thread from the research function. Saying
*stop* in the thread (or pressing the board's Stop button) cancels the run at its next step.
"""

from __future__ import annotations

import re
from typing import Final

from insightmesh.agents.base import AgentContext, AgentReply, ResearchRequest
from insightmesh.agents.catalog import AgentDefinition
from insightmesh.observability import get_logger

PROFILE_AGENT: Final = "profile"
MAX_SUBJECT_CHARS: Final = 200
# Words a person may put before the subject, once the router took the agent's own name away
# ("profile research Acme", "profile of Acme", "research on Jane Doe at Acme").
_LEADING: Final = re.compile(
    r"^(?:(?:<@[A-Z0-9]+(?:\|[^>]*)?>|@\S+|-?profile|-?research|-?investigate|please|pls|a|an|the|"
    r"profile\s+of|report\s+on|on|of|about|into|for)\s+)+", re.IGNORECASE)
_QUOTES: Final = "\"'\u201c\u201d\u2018\u2019`*_"  # straight and curly quotes, code and emphasis marks

ASK_SUBJECT: Final = ("Who or what should I research? Say, for example, `profile Acme Corp` or "
                      "`research Jane Doe at Acme`.")

logger = get_logger("agents.profile")


def subject_of(text: str) -> str:
    """The subject of a profile request: the text without a leading mention, verb or filler,
    without surrounding quotes or emphasis and trailing punctuation, on one line, bounded."""
    subject = " ".join(text.split())
    previous = None
    while previous != subject:
        previous = subject
        subject = _LEADING.sub("", subject + " ").strip()
    subject = subject.strip(_QUOTES).rstrip(" .!?").strip(_QUOTES).strip()
    # A bare verb ("profile") left nothing to research.
    if subject.casefold() in {"profile", "research", "investigate"}:
        return ""
    return subject[:MAX_SUBJECT_CHARS]


class ProfileAgent:
    definition = AgentDefinition(
        name=PROFILE_AGENT,
        display_name="Profile",
        description="Researches a company or a person (web, filings, news) and posts a cited report as a PDF "
                    "in the thread: `profile Acme Corp`.",
        aliases=("research",),
        is_system=True,
        visibility="public",
    )

    def handle(self, context: AgentContext) -> AgentReply:
        subject = subject_of(context.text)
        if not subject:
            return AgentReply(text=ASK_SUBJECT)
        try:
            run_id = context.start_research(ResearchRequest(kind="profile", subject=subject, question=context.text))
        except RuntimeError as error:  # the worker's starter says why (busy, unavailable, ...)
            logger.warning("research not started", extra={"error": str(error)[:200]})
            told = getattr(error, "user_message", None)
            return AgentReply(text=str(told) if told else f"Sorry, I couldn't start the research on **{subject}**: "
                                                          f"{error}. Please try again in a few minutes.")
        # Markdown (the worker converts it): Slack shows "Researching *Acme Corp*… (say *stop* to cancel)".
        return AgentReply(text=f"Researching **{subject}**… I'll post the report here (say **stop** to cancel).",
                          details={"research_run_id": run_id})
