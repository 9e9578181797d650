"""``rag index PATH --engine ray``: parsing, chunking and embedding as a Ray Data pipeline.

The reference shape of Ray embedding pipelines (Anyscale's, ``ray-project/llm-applications``)::

    from_items(changed files) -> flat_map(parse + chunk) -> map_batches(embedder class, actor pool) -> driver

The embedder sits on an actor pool sized to the cluster: one actor per GPU with ``num_gpus=1`` when the cluster has
GPUs, else one actor per node, on all of that node's cores. It asks Ray for one CPU, so that the light parsing
actors fit beside it, and sets its own thread count: Ray gives a one-CPU actor one thread (``OMP_NUM_THREADS``), and
one single-thread actor per core ran at 0.53x the local engine on 2 cores, one two-thread actor at 0.79-0.82x
(docs/scaling.md). The workers read the files themselves, so every node needs the folder at the same path (a shared
filesystem); a node without it fails the run. Only the files the driver's scan found new or changed go through the
pipeline. The driver stays the single writer, and it streams: each document is handed to ``ingest.sync`` as soon as
its last chunk is embedded, and written into the next generation, which stays invisible until the run commits. The
driver therefore holds the documents of about one block, not the whole run (which, at about 2.3 KB of text and
vector a chunk, capped a run near 10M chunks), and writes while the cluster embeds. A pipeline that fails (a worker
that Ray cannot bring back, a cluster that goes away) raises out of the stream; the half-written generation is
removed and the previous one stays live.

Rows carry their document's source, the chunk's position in it and the document's chunk count, so the driver
rebuilds each document's chunk list in order and knows when it is complete. Ray keeps the files' order
(``preserve_order``), and documents are handed over in the scan's order, so chunk ids, texts, offsets and
permissions come out as a local run's, and vectors within float tolerance of it (the same model; batches may be
composed differently).
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .common import UsageError
from .embedding import Embedder
from .errors import EngineError
from .types import Chunk

ROWS_PER_BATCH = 256  # chunks per map_batches call (the embedder batches further inside)
# Files per block at most. A block reaches the driver whole, so this bounds what it holds at once, whatever the
# corpus's size (8 blocks of a fixed count held an eighth of the run: 750 of 6,000 files).
FILES_PER_BLOCK = 64
PARSE_CPUS = 0.25  # parsing is light next to embedding: it shares a core with the embedder actors


class RayEngine:
    """Parse, chunk and embed on a Ray cluster (``address`` None: start or join a local one)."""

    def __init__(
        self,
        embedder_factory: Callable[[], Embedder],
        address: str | None = None,
        workers: int | None = None,
        token_counter: Callable[[], Callable[[str], int]] | None = None,
        **init_args,
    ) -> None:
        self.embedder_factory = embedder_factory
        # what the parsing actors measure chunks with; default: the embedder's own token_len (loads the model)
        self.token_counter = token_counter or (lambda: embedder_factory().token_len)
        self.address = address
        self.workers = workers  # embedder actors at most (default: one per GPU, else one per node)
        self.init_args = init_args  # e.g. num_cpus=2 for a local instance

    def parse(self, folder: Path, changed: list, params: dict, show: bool) -> Iterator[tuple]:
        """(chunks, vectors, None) per changed file, in order, (None, None, reason) when it cannot be loaded, or
        ([], None, reason) when it holds no text; each as soon as the file's last chunk is embedded."""
        if not changed:
            return
        ray = _ray()
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS")  # ray.init's own default
            if address and address.startswith("ray://"):
                # Ray Data's executor needs a full driver (a core worker); over Ray Client it fails with an
                # AttributeError deep inside Ray
                raise UsageError(
                    f"Ray address {address}: Ray Data does not run over Ray Client (ray://). Run rag on a machine "
                    "of the cluster (one where `ray start` ran) with the head's HOST:6379"
                )
            if address and (refused := _unreachable(address)):
                raise EngineError(cannot_connect(address, refused))
            try:
                ray.init(address=self.address, log_to_driver=False, include_dashboard=False, **self.init_args)
            except ConnectionError as err:
                raise EngineError(cannot_connect(address, str(err.__cause__ or err))) from None
        from ray.data import DataContext

        # The context is the process's own; what this run sets is given back when it ends, for a caller's own Ray
        # Data work
        context = DataContext.get_current()
        before = (context.enable_progress_bars, context.execution_options.preserve_order)
        try:
            context.enable_progress_bars = show
            # Files come out in the order they went in, so documents complete in the scan's order and the driver
            # buffers only those still in flight (without it, one slow block holds back every later document).
            context.execution_options.preserve_order = True
            yield from self._stream(ray, folder, changed, params)
        except ray.exceptions.RayError as err:
            # Ray's message is the worker's traceback; its last line is the error raised there
            lines = [line for line in str(err).splitlines() if line.strip()]
            raise EngineError(f"the Ray pipeline failed: {lines[-1].strip() if lines else type(err).__name__}") from err
        finally:
            context.enable_progress_bars, context.execution_options.preserve_order = before

    def _stream(self, ray, folder: Path, changed: list, params: dict) -> Iterator[tuple]:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        nodes = max(1, sum(1 for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU")))
        workers = min(self.workers or gpus or nodes, gpus or cpus)
        threads = None if gpus else max(1, cpus // workers)  # a node's cores, shared by its embedder actors
        # Each file is read again on a worker: it must hold what the scan read, hashed and judged by the policy
        items = [{"source": item.source, "hash": item.hash} for item in changed]
        dataset = (
            ray.data.from_items(
                items, override_num_blocks=max(min(len(items), 4 * cpus), -(-len(items) // FILES_PER_BLOCK))
            )
            .flat_map(
                _ParseAndChunk,
                fn_constructor_args=(str(folder), self.token_counter, params),
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=cpus),
                num_cpus=PARSE_CPUS,
            )
            .map_batches(
                _Embed,
                fn_constructor_args=(self.embedder_factory, threads),
                batch_size=ROWS_PER_BATCH,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers),
                num_gpus=1 if gpus else 0,
                num_cpus=1,
            )
        )
        documents = DocumentAssembler([item.source for item in changed])
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            yield from documents.add(batch)
        documents.check_complete()


class DocumentAssembler:
    """Rebuilds documents from the pipeline's rows (one per chunk, or one per file that yields no chunk) and hands
    them out in the scan's order, each as soon as it and every document before it are complete."""

    def __init__(self, sources: list[str]) -> None:
        self.sources = sources
        self.next = 0  # index into sources of the next document to hand out
        self.parts: dict[str, list] = {}  # source -> (position, chunk, vector) received so far
        self.done: dict[str, tuple] = {}  # complete, waiting for an earlier document

    def add(self, batch: dict) -> Iterator[tuple]:
        for row in range(len(batch["source"])):
            source = str(batch["source"][row])
            if batch["error"][row]:
                self.done[source] = (None, None, str(batch["error"][row]))
            elif batch["position"][row] < 0:  # loaded, but no text to chunk
                self.done[source] = ([], None, str(batch["empty"][row]))
            else:
                parts = self.parts.setdefault(source, [])
                parts.append((int(batch["position"][row]), _chunk(batch, row), batch["vector"][row]))
                if len(parts) == int(batch["count"][row]):
                    self.done[source] = _document(self.parts.pop(source))
        while self.next < len(self.sources) and self.sources[self.next] in self.done:
            yield self.done.pop(self.sources[self.next])
            self.next += 1

    def check_complete(self) -> None:
        """A pipeline that ends with a document missing or partial lost rows: fail rather than index part of it."""
        if self.next < len(self.sources):
            missing = self.sources[self.next]
            have = len(self.parts.get(missing, ()))
            raise RuntimeError(f"the Ray pipeline ended without all of {missing} ({have} chunks arrived); index again")


def ray_engine(embedder_name: str, dtype: str | None, address: str | None) -> RayEngine:
    """The CLI's engine: every actor loads the same embedder the driver checked against the index, in the same
    precision, on the runtime the driver's user asked for (else the one its own hardware picks)."""
    from .embedding import load_embedder, load_token_counter
    from .embedding_openvino import wanted_runtime

    _ray()
    return RayEngine(
        functools.partial(load_embedder, embedder_name, progress=False, dtype=dtype, runtime=wanted_runtime(None)),
        address=address,
        token_counter=functools.partial(load_token_counter, embedder_name),
    )


def cannot_connect(address: str | None, why: str) -> str:
    """What to do when this process cannot join the cluster: ``ray.init``'s own message names no cause."""
    where = f"cannot connect to the Ray cluster at {address}" if address else "cannot connect to a Ray cluster"
    if "auth" in why.lower():
        return (
            f"{where}: it asks for a token (Ray token authentication). Set RAY_AUTH_MODE=token where rag runs, with "
            "the cluster's token in ~/.ray/auth_token or $RAY_AUTH_TOKEN"
        )
    return f"{where} ({why}): is it running? (`ray status` on its head node; `ray start --head` starts one)"


def _unreachable(address: str) -> str | None:
    """Why nothing accepts a connection at HOST:PORT, or None. Ray would retry such an address for up to 20 minutes
    (20 tries with a 60 s timeout each) before it said so; ``auto`` is left to Ray."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as err:
        return err.strerror or str(err) or type(err).__name__
    return None


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError('--engine ray needs Ray: pip install "docrag[ray]" (or pip install "ray[data]")') from None
    return ray


class _ParseAndChunk:
    """A parsing actor: loads the embedder's tokenizer once (chunks are measured in its tokens)."""

    def __init__(self, folder: str, token_counter: Callable[[], Callable[[str], int]], params: dict) -> None:
        from .chunking import Chunker

        self.folder = Path(folder)
        if not self.folder.is_dir():  # the worker reads the files itself: without them every file would fail
            raise FileNotFoundError(
                f"{folder} is not a folder on {_this_node()}: every node of the cluster needs the folder "
                "at the same path (a shared filesystem)"
            )
        self.chunker = Chunker(token_counter(), params["chunk_size"], params["overlap"])
        self.max_bytes = params["max_file_bytes"]

    def __call__(self, row: dict) -> list[dict]:
        from .local_engine import embedding_text, read_and_chunk

        source = row["source"]
        chunks, reason = read_and_chunk(self.folder, source, row["hash"], self.max_bytes, self.chunker)
        if chunks is None:
            return [_row(source, -1, None, "", reason)]
        if not chunks:
            return [_row(source, -1, None, "", "", empty=reason)]
        return [_row(source, i, c, embedding_text(source, c), "", len(chunks)) for i, c in enumerate(chunks)]


def _row(
    source: str, position: int, chunk: Chunk | None, text: str, error: str, count: int = 0, empty: str = ""
) -> dict:
    return {
        "source": source,
        "position": position,
        "count": count,  # the document's chunks: the driver knows it is complete when it holds them all
        "empty": empty,  # why a file that loaded has no chunk ("empty file"): its old version leaves the index
        "start": chunk.start if chunk else 0,
        "end": chunk.end if chunk else 0,
        "text": chunk.text if chunk else "",
        "page": chunk.page if chunk and chunk.page is not None else -1,
        "heading": chunk.heading if chunk else "",
        "embed_text": text,
        "error": error,
    }


def _this_node() -> str:
    import ray

    return f"Ray node {ray.util.get_node_ip_address()}" if ray.is_initialized() else "this machine"


class _Embed:
    """The actor: loads the embedder once, then embeds batch after batch, on ``threads`` cores (None: a GPU's)."""

    def __init__(self, factory: Callable[[], Embedder], threads: int | None) -> None:
        if threads is not None:  # before the load: the OpenVINO runtime takes torch's thread count when it compiles
            import torch

            torch.set_num_threads(threads)
        self.embedder = factory()

    def __call__(self, batch: dict) -> dict:
        vectors = np.zeros((len(batch["source"]), self.embedder.dimension), dtype=np.float32)
        real = batch["position"] >= 0
        if real.any():
            vectors[real] = self.embedder.embed([str(t) for t in batch["embed_text"][real]])
        return {**batch, "vector": vectors}


def _chunk(batch: dict, row: int) -> Chunk:
    page = int(batch["page"][row])
    return Chunk(
        int(batch["start"][row]), int(batch["end"][row]), str(batch["text"][row]), None if page < 0 else page,
        str(batch["heading"][row]),
    )  # fmt: skip


def _document(parts: list) -> tuple:
    parts.sort(key=lambda part: part[0])
    return [c for _, c, _ in parts], np.stack([v for _, _, v in parts]).astype(np.float32), None
