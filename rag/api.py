"""The Python API: one object per index directory, which the CLI and the HTTP server are thin layers over.

    from rag.api import Index

    with Index.open(".rag") as index:
        hits = index.search("travel per diem", user="alice", k=3)["results"]
        reply = index.ask("What is the per diem for Oslo?", user="alice")
        print(reply["answer"], [c["source"] for c in reply["citations"]])

Every method returns the dict that the matching CLI command prints with ``--json`` (DESIGN.md), so scripts, the
server and the CLI agree on one shape. ``user=None`` is the anonymous user everywhere: it sees only documents open
to everyone. ``status()`` without ``user`` is the owner's view of the whole index (the CLI's); ``status(user=...)``
counts only what that user may read and names no policy rule, group or path.

Thread-safe, for a server: each call leases the live generation for its whole duration, so a `rag index` that
publishes a new generation meanwhile is picked up by the next call and never mixed into this one; the old
generation is closed when its last call returns. Models load once (``load_models()``, or lazily on first use).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ingest.common import default_index_dir
from ingest.embedding import check_recorded_embedder
from ingest.store import OpenIndex, current_generation, open_index

from .errors import ChunkNotFoundError
from .factories import ModelFactories
from .permissions import readable
from .retrieval import Retriever, check_mode
from .status import status_data


class _Owner:
    def __repr__(self) -> str:
        return "OWNER"


OWNER = _Owner()  # status(user=OWNER): the whole index, as its owner sees it on the command line


class Index:
    """Search and ask one index directory as a given user; see the module docstring."""

    def __init__(
        self,
        index_dir: Path | str | None = None,
        *,
        embedder=None,
        generator=None,
        retrieval="hybrid",
        models: ModelFactories | None = None,
    ):
        self.index_dir = Path(index_dir) if index_dir is not None else default_index_dir()
        self.retrieval = check_mode(retrieval)
        self._models = models or ModelFactories()
        self._embedder_arg = embedder
        self._embedder = None
        self._generator_arg = generator
        self._generator = None
        self._models_lock = threading.Lock()
        # One reading at a time: the generator keeps per-call state (its KV prefix cache), and two decodings on the
        # same cores would each run at half speed anyway.
        self._reading = threading.Lock()
        self._live = _LiveGeneration(self.index_dir)
        with self._live.lease():  # a missing or corrupt index fails here, before any model loads
            pass

    @classmethod
    def open(cls, index_dir: Path | str | None = None, **options) -> Index:
        """Open the live generation of ``index_dir`` (default: $RAG_INDEX_DIR, else ./.rag).

        Options: ``embedder`` (name, path or object with ``embed``; default: the one that built the index),
        ``generator`` (name, path or object; default: the bundled Gemma), ``retrieval`` ("hybrid" or "dense"),
        ``models`` (the ``rag.factories.ModelFactories`` that load names: tests pass fakes)."""
        return cls(index_dir, **options)

    @property
    def name(self) -> str:
        """What clients call this index (the OpenAI-compatible endpoint's model name): its directory's name."""
        return self.index_dir.resolve().name

    @property
    def generation(self) -> str:
        with self._live.lease() as live:
            return live.index.generation

    # --- models -----------------------------------------------------------------------------------------------
    def load_models(self, generator: bool = True) -> None:
        """Load the embedder (and the generator) now rather than on the first call: a server does it at startup."""
        with self._live.lease() as live:
            self._embedder_for(live.index)
        if generator:
            self._generator_model()

    def _embedder_for(self, index: OpenIndex):
        with self._models_lock:
            if self._embedder is None:
                arg = self._embedder_arg
                # A model path read from the index's own files is not loaded unless the user names it
                # (docs/security.md): the index dir is not trusted to choose code to run.
                name = check_recorded_embedder(index.meta("embedder"), self.index_dir) if arg is None else arg
                self._embedder = self._models.embedder(name, progress=False) if isinstance(name, str) else name
            return self._embedder

    def _generator_model(self):
        with self._models_lock:
            if self._generator is None:
                arg = self._generator_arg
                self._generator = self._models.generator(arg) if arg is None or isinstance(arg, str | Path) else arg
            return self._generator

    # --- queries ------------------------------------------------------------------------------------------------
    def search(self, query: str, *, user: str | None = None, k: int = 5, mode: str | None = None) -> dict:
        """``{"results": [{"rank", "score", "source", "chunk_id", "text", "start", "end", ...}]}``: the ``k``
        chunks most relevant to ``query`` among those ``user`` may read."""
        with self._retriever() as retriever:
            results = retriever.search(query, k=k, user=user, mode=mode)
        return {"results": [r.to_json() for r in results]}

    def ask(
        self,
        question: str,
        *,
        user: str | None = None,
        k: int | None = None,
        on_token: Callable[[str], None] | None = None,
        max_new_tokens: int = 48,
    ) -> dict:
        """``{"answer", "abstained", "citations": [{"n", "source", "chunk_id", "score"}], "timings", "reason"}``
        from the documents ``user`` may read, or "I don't know." (``abstained``). ``on_token`` sees the answer's
        text as it is produced; the returned ``answer`` is the verdict (a streamed reading may still be withheld)."""
        from .answer import answer_question

        generator = self._generator_model()
        kwargs = {"user": user, "max_new_tokens": max_new_tokens, "on_token": on_token}
        if k is not None:
            kwargs["k"] = k
        with self._retriever() as retriever, self._reading:
            return answer_question(retriever, generator, question, **kwargs).to_json()

    def passage(self, chunk_id: int, *, user: str | None = None) -> dict:
        """The cited chunk, ``{"chunk_id", "source", "text", "start", "end", "page", "heading"}``, when ``user``
        may read it. A chunk they may not read raises the same ChunkNotFoundError as one that does not exist, so
        the answer says nothing about other users' documents."""
        missing = ChunkNotFoundError(
            f"no passage {chunk_id} among the documents you may read; it may have changed since it was cited"
        )
        if not 0 <= int(chunk_id) < 2**63:  # SQLite's integer range: anything else names no chunk
            raise missing
        with self._live.lease() as live:
            index = live.index
            principals = _principals(index, user)
            record = index.catalog.chunks_by_id([chunk_id]).get(int(chunk_id))
            if record is None or not readable(index.catalog.principals_of_chunk(record.id), principals):
                raise missing
        return {
            "chunk_id": record.id,
            "source": record.source,
            "text": record.text,
            "start": record.start,
            "end": record.end,
            "page": record.page,
            "heading": record.heading,
        }

    def status(self, *, user=OWNER, policy: bool = False, share_of: str | None = None) -> dict:
        """What the index holds. The owner's view (no ``user``) is ``rag status --json``: counts, embedder, whether
        a policy is in force (``rag.status.status_data``); ``policy=True`` adds the rules with their document counts
        and the groups, ``share_of=NAME`` what that user may read. A user's view (``user=NAME`` or None for
        anonymous, what the server shows) counts only the documents and chunks that user may read, and leaves out
        the policy and paths."""
        with self._live.lease() as live:
            index = live.index
            if user is OWNER:
                return status_data(index, user=share_of, policy=policy)
            documents, chunks = _readable_counts(index, _principals(index, user))
            policy_record = index.meta("policy", {}) or {}
            return {
                "documents": documents,
                "chunks": chunks,
                "embedder": index.meta("embedder"),
                "dimension": index.meta("dimension"),
                "acl": not policy_record.get("open", True),
                "user": user,
                "index": self.name,
                "generation": index.generation,
                "indexed_at": index.meta("indexed_at"),
                "chunk_size": index.meta("chunk_size"),
                "overlap": index.meta("overlap"),
                "vector_index": index.meta("vector_kind"),
            }

    def close(self) -> None:
        self._live.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _retriever(self) -> Iterator[Retriever]:
        with self._live.lease() as live:
            embedder = self._embedder_for(live.index)
            yield _PinnedRetriever(live.index, embedder, self.retrieval, live.permitted)


def _principals(index: OpenIndex, user: str | None) -> frozenset[str]:
    from .permissions import query_principals

    return query_principals(index.meta("groups", {}) or {}, user)


def _readable_counts(index: OpenIndex, principals: frozenset[str]) -> tuple[int, int]:
    documents = sum(readable(doc.principals, principals) for doc in index.catalog.documents().values())
    chunks = sum(readable(doc_principals, principals) for _, doc_principals in index.catalog.chunk_principals())
    return documents, chunks


class _PinnedRetriever(Retriever):
    """A Retriever bound to one open generation: every lookup of one call reads the same catalog and vectors."""

    def __init__(self, index: OpenIndex, embedder, mode: str, permitted) -> None:
        self._pinned = index
        super().__init__(index.directory, embedder=embedder, mode=mode)
        self._permitted = permitted  # shared by the generation's calls: one permitted-id set per principal set

    @property
    def index(self) -> OpenIndex:
        return self._pinned

    def close(self) -> None:
        """The generation belongs to the Index that leased it."""


class _Generation:
    """One open generation and the number of calls using it."""

    def __init__(self, index: OpenIndex) -> None:
        from .permissions import PermittedIds

        self.index = index
        self.permitted = PermittedIds()
        self.users = 0
        self.retired = False


class _LiveGeneration:
    """The live generation of an index dir, re-opened when CURRENT names a new one; calls hold a lease on the one
    they started with, and a retired generation is closed when its last lease ends."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir
        self._lock = threading.Lock()
        self._current: _Generation | None = None

    @contextlib.contextmanager
    def lease(self) -> Iterator[_Generation]:
        name = current_generation(self.index_dir)
        with self._lock:
            if self._current is None or name != self._current.index.generation:
                # open_index raises on a missing or inconsistent index: fail closed rather than keep serving a
                # generation whose permissions a newer policy may have narrowed.
                fresh = _Generation(_shared(open_index(self.index_dir)))
                self._retire(self._current)
                self._current = fresh
            generation = self._current
            generation.users += 1
        try:
            yield generation
        finally:
            with self._lock:
                generation.users -= 1
                if generation.retired and generation.users == 0:
                    generation.index.close()

    def _retire(self, generation: _Generation | None) -> None:
        if generation is not None:
            generation.retired = True
            if generation.users == 0:
                generation.index.close()

    def close(self) -> None:
        with self._lock:
            self._retire(self._current)
            self._current = None


def _shared(index: OpenIndex) -> OpenIndex:
    """The same generation with its catalog usable from several threads, one query at a time."""
    return OpenIndex(index.directory, index.generation, _SerialCatalog(index.catalog), index.vectors)


class _SerialCatalog:
    """Wraps a read-only Catalog so that concurrent calls take turns on its one SQLite connection. Methods that
    return lists and dicts only: a generator (``iter_chunks``) would run outside the lock."""

    def __init__(self, catalog) -> None:
        self._catalog = catalog
        self._lock = threading.RLock()

    def __getattr__(self, name: str):
        attribute = getattr(self._catalog, name)
        if not callable(attribute):
            return attribute

        def serial(*args, **kwargs):
            with self._lock:
                return attribute(*args, **kwargs)

        return serial
