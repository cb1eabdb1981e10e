"""A generated company knowledge base with questions whose answer lives in exactly one document.

Forty documents on distinct topics each hold one distinctive fact, in the middle of a few
paragraphs of company-handbook filler (so every document spans several chunks and shares most of
its vocabulary with the others); distractor documents mix the same common words and several of
the questions' words without any fact. Deterministic for a given seed. Used by the retrieval
quality test (tests/integration/test_knowledge.py) and benchmarks/retrieval.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from insightmesh.knowledge.base import SourceDocument

# (title, fact, question): the question's answer is the fact, and only that document holds it.
TOPICS: tuple[tuple[str, str, str], ...] = (
    ("Parental leave", "New parents receive 18 weeks of parental leave at full pay.",
     "How many weeks of paid leave do new parents get?"),
    ("Expense reimbursement", "Expense claims must be filed in Spendwise within 30 days of the purchase.",
     "Which tool do I use to file expense claims?"),
    ("VPN access", "The VPN client connects to the gateway vpn-eu-2 with hardware keys.",
     "Which gateway does the VPN client connect to?"),
    ("Lisbon office", "The Lisbon office is on Rua Augusta 210, third floor, and opens at 8 am.",
     "What is the street address of the Lisbon office?"),
    ("Sales commission plan", "Account executives earn a 9 percent commission on new annual recurring revenue.",
     "What commission rate do account executives earn?"),
    ("Security incidents", "Report security incidents to the pager alias secops-911 within 15 minutes.",
     "Which pager alias do I use to report a security incident?"),
    ("Laptop refresh", "Laptops are replaced every 36 months through the Hardware Hub portal.",
     "How often are laptops replaced?"),
    ("Onboarding buddies", "Every new hire is paired with an onboarding buddy for their first 60 days.",
     "How long does the onboarding buddy pairing last?"),
    ("Business travel", "Flights under six hours are booked in economy class through Navan.",
     "What class can I fly on short flights?"),
    ("Holiday calendar", "The winter shutdown runs from December 24 to January 1 every year.",
     "When is the winter shutdown?"),
    ("Code review", "Every pull request needs two approvals, one of them from a code owner.",
     "How many approvals does a pull request need?"),
    ("Incident postmortems", "Blameless postmortems are due within five business days of an outage.",
     "When is a postmortem due after an outage?"),
    ("Data retention", "Customer logs are retained for 400 days and then deleted automatically.",
     "How long are customer logs retained?"),
    ("Password policy", "Passwords must have at least 14 characters and rotate only after a compromise.",
     "What is the minimum password length?"),
    ("Wellness stipend", "Each employee receives a wellness stipend of 75 euros per month for gyms or classes.",
     "How much is the monthly wellness stipend?"),
    ("Learning budget", "The learning budget is 1500 dollars per person per year for courses and conferences.",
     "What is the yearly learning budget per person?"),
    ("Performance reviews", "Performance reviews run in March and September using the Lattice tool.",
     "In which months do performance reviews happen?"),
    ("Working abroad", "Employees may work remotely from another country for up to 45 days per year.",
     "How many days a year can I work from another country?"),
    ("Enterprise pricing", "The Enterprise plan costs 49 dollars per seat per month with a 50 seat minimum.",
     "How much does the Enterprise plan cost per seat?"),
    ("Support SLA", "Priority one tickets receive a first response within 30 minutes, day or night.",
     "How fast is the first response for a priority one ticket?"),
    ("Release schedule", "Production deploys happen on Tuesdays and Thursdays; Friday deploys are frozen.",
     "On which weekdays do production deploys happen?"),
    ("Primary database", "The primary PostgreSQL database runs in Frankfurt with a replica in Dublin.",
     "Where does the primary database run?"),
    ("Brand colors", "The primary brand color is Ocean Teal, hex 0A7E8C.",
     "What is the hex code of the primary brand color?"),
    ("Procurement rules", "Purchases above 10000 dollars need a second quote and CFO approval.",
     "Which purchases need CFO approval?"),
    ("Referral bonus", "A successful referral earns a 3000 dollar bonus after the hire's first 90 days.",
     "How big is the referral bonus?"),
    ("Berlin parking", "The Berlin office has 24 parking spots, assigned by lottery each quarter.",
     "How are parking spots assigned in Berlin?"),
    ("Meeting rooms", "Meeting rooms are booked in Robin and are named after rivers such as Danube and Tagus.",
     "Which app do I use to book meeting rooms?"),
    ("Revenue retention", "Net revenue retention was 118 percent last fiscal year.",
     "What was net revenue retention last fiscal year?"),
    ("Mobile app support", "The mobile app supports iOS 16 and Android 12 or newer.",
     "Which Android versions does the mobile app support?"),
    ("On-call compensation", "On-call engineers receive 200 euros for each week of rotation.",
     "What do on-call engineers receive per week of rotation?"),
    ("Interview loop", "The interview loop is a recruiter screen, a take-home exercise, system design and a values "
     "interview.", "What are the stages of the interview loop?"),
    ("Stock options", "Stock options vest over four years with a one-year cliff.",
     "What is the vesting schedule for stock options?"),
    ("Sustainability", "The company offsets 120 percent of its travel emissions through Gold Standard projects.",
     "How much of its travel emissions does the company offset?"),
    ("Accessibility", "All web products target WCAG 2.2 level AA conformance.",
     "Which accessibility standard do web products target?"),
    ("API rate limits", "The public API allows 600 requests per minute per token.",
     "What is the rate limit of the public API?"),
    ("Dogs at the office", "Dogs are welcome in the Amsterdam office on Fridays once registered with facilities.",
     "When can I bring my dog to the Amsterdam office?"),
    ("Conference sponsorship", "We sponsor KubeCon Europe and PyCon US every year.",
     "Which conferences do we sponsor?"),
    ("Board meetings", "The next board meeting is on 14 March in London.",
     "Where is the next board meeting?"),
    ("Printing", "The third floor printer Gutenberg releases print jobs after a badge tap.",
     "How do I release print jobs?"),
    ("Cafeteria", "Lunch in the cafeteria is free on Wednesdays.",
     "Which day is lunch free in the cafeteria?"),
)

FILLER = (
    "This page is maintained by the team that owns the process and is reviewed every quarter.",
    "Employees should ask their manager when something here is unclear or out of date.",
    "The company updates its policies when regulations or business needs change.",
    "Requests are tracked in the internal service portal so that nothing gets lost.",
    "Exceptions need written approval and are recorded for the yearly audit.",
    "New hires read this page during their first week together with the handbook.",
    "Regional differences are listed in the local annex where the law requires them.",
    "Questions about this topic can also be raised in the weekly office hours.",
    "The guidance applies to full-time and part-time employees alike unless stated otherwise.",
    "Contractors follow the rules of their own agreement, which may differ from this page.",
    "Please do not share this page outside the company without permission.",
    "Feedback on this page is welcome and helps the owners keep it accurate.",
)


@dataclass(frozen=True)
class Question:
    text: str
    document_id: str


def _codenames(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct pronounceable made-up words (division codenames)."""
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3)).capitalize())
    return sorted(names)


def _paragraphs(rng: random.Random, count: int) -> list[str]:
    return [" ".join(rng.sample(FILLER, 4)) for _ in range(count)]


def generate_corpus(*, seed: int = 7, distractors: int = 40, source: str = "local:corpus",
                    copies: int = 1) -> tuple[list[SourceDocument], list[Question]]:
    """The documents (``len(TOPICS) * copies`` topic documents plus ``distractors``) and one question
    per topic document. With ``copies`` > 1 each copy of the topics belongs to its own made-up
    division (in title, fact and question), so every question still has exactly one answer."""
    rng = random.Random(seed)
    documents: list[SourceDocument] = []
    questions: list[Question] = []
    question_words = [word for _, _, question in TOPICS for word in question.rstrip("?").split()]
    codenames = _codenames(rng, copies) if copies > 1 else [""]
    for copy, codename in enumerate(codenames):
        for number, (title, fact, question) in enumerate(TOPICS):
            document_id = f"{source}/topic-{copy}-{number}"
            body = _paragraphs(rng, 3)
            body.insert(2, f"{fact} This applies to the {codename} division." if codename else fact)
            body += _paragraphs(rng, 2)
            full_title = f"{title} ({codename})" if codename else title
            text = f"# {full_title}\n\n" + "\n\n".join(body)
            documents.append(SourceDocument(document_id=document_id, source=source, title=full_title,
                                            mime_type="text/markdown", content=text.encode()))
            asked = f"{question.rstrip('?')} in the {codename} division?" if codename else question
            questions.append(Question(asked, document_id))
    for number in range(distractors):
        words = " ".join(rng.sample(question_words, 12))
        body = _paragraphs(rng, 4)
        body.insert(1, f"Notes from the meeting touched on {words}, without decisions.")
        text = "\n\n".join(body)
        documents.append(SourceDocument(document_id=f"{source}/distractor-{number}", source=source,
                                        title=f"Team update {number}", mime_type="text/plain",
                                        content=text.encode()))
    return documents, questions


def hit_rate_and_mrr(ranked: list[list[str]], expected: list[str], *, k: int = 5) -> tuple[float, float]:
    """hit@k and MRR of per-question document rankings (document ids, best first, duplicates ignored)."""
    hits = 0
    reciprocal = 0.0
    for documents, wanted in zip(ranked, expected, strict=True):
        order = list(dict.fromkeys(documents))
        if wanted in order[:k]:
            hits += 1
        if wanted in order:
            reciprocal += 1.0 / (order.index(wanted) + 1)
    return hits / len(expected), reciprocal / len(expected)
