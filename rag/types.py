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

    def to_json(self) -> dict:
        return asdict(self)


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
