"""Prompt building: numbered passages with their sources, then the question. Pure functions, no model.

A base model (the bundled Gemma 3 270M) answers best from a short few-shot completion prompt that ends in
"Answer:"; an instruction-tuned model gets the same content through its chat template. Passages are trimmed to fit
the context window, never the question.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

UNKNOWN = "unknown"

INSTRUCTIONS = (
    "Answer the question from the numbered passages only. Reply with the shortest exact phrase from the passages "
    f'that answers it, then the passage number in brackets, like "12 May 2031 [2]". If the passages do not answer '
    f'the question, reply "{UNKNOWN}".'
)

# Invented, deliberately unlike any real corpus, so the examples teach the format and not facts.
_EXAMPLES = [
    (
        [
            ("fleet/skarv.md", "The research vessel Skarv carries twelve crew and one survey drone."),
            ("fleet/terne.md", "The tender Terne is moored at Pier 4 and carries four crew."),
        ],
        "How many crew does the Skarv carry?",
        "twelve [1]",
    ),
    (
        [("canteen/menu.txt", "The canteen serves lentil soup every Thursday from 11:30.")],
        "Who is the head chef of the canteen?",
        UNKNOWN,
    ),
    (
        [
            ("it/vpn.md", "VPN tokens are renewed every 90 days by the service desk."),
            ("it/wifi.md", "The guest Wi-Fi network is called Lantern-Guest; its password changes monthly."),
        ],
        "What is the name of the guest Wi-Fi network?",
        "Lantern-Guest [2]",
    ),
]


EXTRACTIVE_INSTRUCTIONS = (
    "Answer each question with the shortest phrase copied from the passages, with its unit or currency, "
    f'or "{UNKNOWN}" if the passages do not answer it.'
)

# Sentence-level examples for the extractive reader: a table row, a date, a person, and an unanswerable question.
# Invented and unlike any real corpus, so they teach the format (copy the whole value, "unknown") and not facts.
_EXTRACTIVE_EXAMPLES = [
    (
        [
            ("fleet rates | Port | Full day | Half day", "| Bergen | NOK 610 | NOK 305 |"),
            ("fleet > Skarv", "The research vessel Skarv was launched on 9 March 2029 in Alesund."),
        ],
        "What is the full-day rate for Bergen?",
        "NOK 610",
    ),
    (
        [
            ("fleet > Skarv", "The research vessel Skarv was launched on 9 March 2029 in Alesund."),
            ("crew", "Mina Dahl, chief engineer, leads the sonar team of twelve."),
        ],
        "Who leads the sonar team?",
        "Mina Dahl",
    ),
    (
        [("canteen > menu", "The canteen serves lentil soup every Thursday from 11:30.")],
        "Who is the head chef of the canteen?",
        UNKNOWN,
    ),
    (
        [
            ("crew", "Mina Dahl, chief engineer, leads the sonar team of twelve."),
            ("fleet > Skarv", "The research vessel Skarv was launched on 9 March 2029 in Alesund."),
        ],
        "When was the Skarv launched?",
        "9 March 2029",
    ),
]


def extractive_prompt(question: str, passages: list[Passage]) -> str:
    """Few-shot completion for span extraction: sentences with their context, the question, "Answer:"."""
    return extractive_prefix() + extractive_query(question, passages)


def extractive_query(question: str, passages: list[Passage]) -> str:
    """The variable end of ``extractive_prompt``: this question and its sentences."""
    return _question_block(question, passages)


def extractive_prefix() -> str:
    """The fixed start of ``extractive_prompt`` (instructions and examples); generators cache its KV once."""
    return _few_shot_block(EXTRACTIVE_INSTRUCTIONS, _EXTRACTIVE_EXAMPLES)


def _few_shot_block(instructions: str, examples: list) -> str:
    """The fixed start of a few-shot prompt: the instructions, then each example's passages, question and answer."""
    blocks = [instructions, ""]
    for example_passages, example_question, example_answer in examples:
        numbered = [Passage(i + 1, s, t) for i, (s, t) in enumerate(example_passages)]
        blocks += [
            "Passages:",
            format_passages(numbered),
            f"Question: {example_question}",
            f"Answer: {example_answer}",
            "",
        ]
    return "\n".join(blocks) + "\n"


def _question_block(question: str, passages: list[Passage]) -> str:
    """The variable end of a few-shot prompt: the numbered passages, the question and "Answer:" to complete."""
    blocks = ["Passages:", format_passages(passages), f"Question: {' '.join(question.split())}", "Answer:"]
    return "\n".join(blocks)


@dataclass(frozen=True)
class Passage:
    n: int
    source: str
    text: str


def format_passages(passages: list[Passage]) -> str:
    return "\n".join(f"[{p.n}] ({p.source}) {' '.join(p.text.split())}" for p in passages)


def completion_prompt(question: str, passages: list[Passage]) -> str:
    return _few_shot_block(INSTRUCTIONS, _EXAMPLES) + _question_block(question, passages)


def chat_content(question: str, passages: list[Passage]) -> str:
    """The one user message of a chat prompt: instructions, numbered passages, the question."""
    return f"{INSTRUCTIONS}\n\nPassages:\n{format_passages(passages)}\n\nQuestion: {' '.join(question.split())}"


def chat_messages(question: str, passages: list[Passage]) -> list[dict]:
    return [{"role": "user", "content": chat_content(question, passages)}]


def fit_passages(
    question: str,
    passages: list[Passage],
    build: Callable[[str, list[Passage]], str],
    count_tokens: Callable[[str], int],
    budget: int,
) -> list[Passage]:
    """Drop the lowest-ranked passages, then shorten the last one, until the prompt fits ``budget`` tokens."""
    kept = list(passages)
    while kept and count_tokens(build(question, kept)) > budget:
        last = kept[-1]
        words = last.text.split()
        if len(kept) > 1 or len(words) <= 16:
            kept.pop()
        else:
            kept[-1] = Passage(last.n, last.source, " ".join(words[: len(words) * 2 // 3]))
    return kept
