"""Plain data types of the query side."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol


class Generator(Protocol):
    """What the readers need of a language model, in process (rag.generation) or behind a server (rag.llm_server).
    A long fixed ``prefix`` (few-shot examples, documents) goes before each prompt; a generator may cache it."""

    name: str
    context_window: int

    def count_tokens(self, text: str) -> int: ...

    def stream(
        self, prompt: str, max_new_tokens: int = 48, stop: Sequence[str] = ("\n",), prefix: str = ""
    ) -> Iterator[str]: ...

    def generate(
        self, prompts: list[str], max_new_tokens: int = 48, stop: Sequence[str] = ("\n",), prefix: str = ""
    ) -> list[str]:
        """Each prompt's whole continuation (a generator that subclasses this protocol inherits it)."""
        return ["".join(self.stream(p, max_new_tokens, stop, prefix)) for p in prompts]


@dataclass(frozen=True)
class SearchResult:
    """One retrieved chunk, as ``rag search --json`` prints it."""

    rank: int
    score: float
    source: str  # document path relative to the indexed folder, "/" separators
    chunk_id: int
    text: str
    start: int
    end: int
    page: int | None = None
    heading: str = ""  # Markdown heading path above the chunk
    lead: str = ""  # the opening of the chunk's document (its title and header fields): reader context, not output

    @classmethod
    def from_record(cls, rank: int, score: float, record) -> SearchResult:
        """A result for an ``ingest.catalog.ChunkRecord`` found at ``rank`` with ``score``."""
        return cls(
            rank=rank,
            score=round(float(score), 6),
            source=record.source,
            chunk_id=int(record.id),
            text=record.text,
            start=record.start,
            end=record.end,
            page=record.page,
            heading=record.heading,
            lead=record.lead,
        )

    def to_json(self) -> dict:
        fields = asdict(self)
        del fields["lead"]  # the document's opening is the reader's context; `rag search` shows the chunk
        return fields


@dataclass
class Citation:
    n: int  # the passage number shown in the prompt, [n]
    source: str
    chunk_id: int
    score: float


@dataclass
class Answer:
    """What ``rag ask`` returns; ``to_json`` follows the CLI contract in DESIGN.md."""

    answer: str
    abstained: bool
    citations: list[Citation] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    reason: str = ""  # why it abstained (no relevant passage, model said it does not know, ...)

    def to_json(self) -> dict:
        return {
            "answer": self.answer,
            "abstained": self.abstained,
            "citations": [asdict(c) for c in self.citations],
            "timings": self.timings,
            "reason": self.reason,
        }
