"""Plain data types of the query side."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
