"""``meddic``: a MEDDPICC sales-call coach, over several turns.

The rep pastes call notes; the coach finds which of the eight MEDDPICC elements the notes cover,
asks for the missing ones one turn at a time, then gives a structured analysis with coaching
points. Its state (notes, what each element is known to be, what it asked last) is returned to
the worker and kept per thread in DynamoDB — never in process memory, since each turn may run in
a different Lambda container.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from insightmesh.agents.base import AgentContext, AgentReply, ReportDocument, ReportSection
from insightmesh.agents.catalog import AgentDefinition
from insightmesh.llm.base import ChatMessage


@dataclass(frozen=True)
class Element:
    key: str
    title: str
    keywords: tuple[str, ...]
    question: str
    coaching: str


ELEMENTS: Final = (
    Element("metrics", "Metrics", ("metric", "kpi", "%", "percent", "roi", "save", "saving", "reduce", "increase",
                                   "revenue", "$", "hours", "cost"),
            "What measurable outcome does the customer expect (hours saved, cost cut, revenue gained)?",
            "Quantify the value in the customer's own numbers and get them to confirm it."),
    Element("economic_buyer", "Economic buyer", ("economic buyer", "budget", "cfo", "ceo", "vp ", "signs off",
                                                 "sign off", "approve", "approver"),
            "Who controls the budget and can sign off on this purchase? Have you met them?",
            "Get a meeting with the economic buyer; a champion's word is not a budget."),
    Element("decision_criteria", "Decision criteria", ("criteria", "requirement", "must have", "must-have",
                                                       "evaluat", "compare", "security review", "integration"),
            "What criteria will they use to choose a solution, technical and business?",
            "Shape the criteria toward your strengths before the evaluation starts."),
    Element("decision_process", "Decision process", ("decision process", "timeline", "steps", "committee",
                                                     "pilot", "poc", "proof of concept", "deadline",
                                                     "next step", "quarter"),
            "What are the steps and the timeline to a decision, and who takes part in each?",
            "Map every step to a date and an owner, and confirm it with your champion."),
    Element("paper_process", "Paper process", ("legal", "procurement", "contract", "msa", "paperwork",
                                               "purchase order", "redline", "vendor onboarding"),
            "What does the paper process look like: legal, procurement, security, signature?",
            "Start legal and procurement early; they are where quarters slip."),
    Element("identify_pain", "Identify pain", ("pain", "problem", "challenge", "struggl", "frustrat", "manual",
                                               "slow", "broken", "risk", "churn"),
            "What pain is driving this, and what happens if they do nothing?",
            "Tie the pain to a cost of inaction the economic buyer feels."),
    Element("champion", "Champion", ("champion", "advocate", "sponsor", "internal supporter", "ally"),
            "Who is your champion inside the account, and how are they selling for you?",
            "Test the champion: do they have influence, and will they act for you when you are absent?"),
    Element("competition", "Competition", ("competitor", "competition", "alternative", "incumbent", " vs ",
                                           "versus", "in-house", "status quo"),
            "Who or what are you competing against, including building it themselves or doing nothing?",
            "Know why you win against each alternative, doing nothing included."),
)
ANALYSE_WORDS: Final = frozenset({"analyze", "analyse", "analysis", "report", "go", "finish", "score"})
MAX_NOTES_CHARS: Final = 20_000
MAX_DEAL_CHARS: Final = 60


def deal_name(notes: list[str]) -> str:
    """What the deal is called in the report's title: the first sentence of the first notes, short."""
    first = next((line.strip() for note in notes for line in note.splitlines() if line.strip()), "")
    first = first.split(". ", 1)[0].strip(" .:-")
    if len(first) > MAX_DEAL_CHARS:
        first = first[:MAX_DEAL_CHARS].rsplit(" ", 1)[0].rstrip(" ,;:") + "…"
    return first or "this deal"


def analysis_document(state: dict[str, Any], next_steps: str) -> ReportDocument:
    """The final analysis as a report (delivered as a PDF): a section per element, the coaching,
    the next steps, and the rep's notes."""
    known: dict[str, str] = state["known"]
    sections = [ReportSection(heading=f"{element.title} — {'covered' if element.key in known else 'unknown'}",
                              body=known[element.key] if element.key in known
                              else f"Not known yet. {element.question}")
                for element in ELEMENTS]
    coaching = [f"- **{element.title}:** {element.coaching}" for element in ELEMENTS if element.key not in known]
    sections.append(ReportSection(heading="Coaching points", body="\n".join(coaching)
                                  or "Every element is covered: confirm each with the buyer."))
    if next_steps.strip():
        sections.append(ReportSection(heading="Next steps", body=next_steps.strip()))
    notes = "\n\n".join(state["notes"])[-MAX_NOTES_CHARS:]
    if notes:
        sections.append(ReportSection(heading="Call notes", body=notes))
    covered = sum(element.key in known for element in ELEMENTS)
    return ReportDocument(title=f"MEDDPICC analysis — {deal_name(state['notes'])}", sections=tuple(sections),
                          subtitle=f"{covered}/{len(ELEMENTS)} elements covered")


def covered_elements(notes: str) -> dict[str, str]:
    """Which elements the notes mention, with the sentence that mentions each."""
    sentences = [s.strip() for s in notes.replace("\n", ". ").split(". ") if s.strip()]
    found: dict[str, str] = {}
    for element in ELEMENTS:
        for sentence in sentences:
            lowered = f" {sentence.lower()} "
            if any(keyword in lowered for keyword in element.keywords):
                found[element.key] = sentence[:300]
                break
    return found


class MeddicAgent:
    definition = AgentDefinition(
        name="meddic",
        display_name="MEDDPICC coach",
        description="Paste your sales-call notes: it asks for what is missing, then coaches you with a "
                    "MEDDPICC analysis.",
        aliases=("meddpicc", "coach"),
        is_system=True,
        visibility="public",
    )

    def handle(self, context: AgentContext) -> AgentReply:
        state: dict[str, Any] = {"notes": [], "known": {}, "asked": None, **context.state}
        text = context.text.strip()
        if not text and not state["notes"]:
            return AgentReply(text="**MEDDPICC coach** — paste your call notes and I will tell you what is "
                                   "missing. Say `analyze` when you want the analysis, `exit` to stop.",
                              state=state, stay=True)
        wants_analysis = text.lower().strip(" .!") in ANALYSE_WORDS
        if text and not wants_analysis:
            state["notes"].append(text[:MAX_NOTES_CHARS])
            mentioned = covered_elements(text)
            for key, sentence in mentioned.items():
                state["known"].setdefault(key, sentence)
            if state["asked"] and not mentioned:
                state["known"].setdefault(state["asked"], text[:300])  # the answer to the last question
        missing = [element for element in ELEMENTS if element.key not in state["known"]]
        if missing and not wants_analysis:
            ask = missing[0]
            state["asked"] = ask.key
            covered = len(ELEMENTS) - len(missing)
            return AgentReply(
                text=f"Got it — {covered}/{len(ELEMENTS)} MEDDPICC elements covered. "
                     f"Missing: {', '.join(e.title for e in missing)}.\n\n"
                     f"**{ask.title}:** {ask.question}\n\n_Say `analyze` to get the analysis now._",
                state=state, stay=True)
        context.progress("Analysing the call against the eight MEDDPICC elements…")
        text, next_steps = self.analysis(context, state)
        # The same analysis as a PDF in the thread too (the worker hands it to the research function).
        return AgentReply(text=text, state={}, stay=False, document=analysis_document(state, next_steps))

    def analysis(self, context: AgentContext, state: dict[str, Any]) -> tuple[str, str]:
        """(the analysis as Markdown, the LLM's next steps on their own)."""
        known: dict[str, str] = state["known"]
        lines = ["**MEDDPICC analysis**", ""]
        for element in ELEMENTS:
            if element.key in known:
                lines.append(f"- **{element.title}** ✅ {known[element.key]}")
            else:
                lines.append(f"- **{element.title}** ❌ unknown — {element.question}")
        lines += ["", "**Coaching points**"]
        lines += [f"- {element.title}: {element.coaching}" for element in ELEMENTS
                  if element.key not in known][:4] or ["- Every element is covered: confirm each with the buyer."]
        notes = "\n".join(state["notes"])[-MAX_NOTES_CHARS:]
        completion = context.llm.complete(
            [ChatMessage.user(f"Call notes:\n{notes}\n\nWhat MEDDPICC knows so far:\n"
                              + "\n".join(f"{k}: {v}" for k, v in known.items()))],
            system="You are a MEDDPICC sales coach. In at most five bullet points, give the rep concrete next "
                   "steps to strengthen this deal. Be specific to the notes.",
        )
        lines += ["", "**Next steps**", completion.text]
        return "\n".join(lines), completion.text
