"""`rag index --engine ray` builds the same index as a local run, on a local Ray instance with 2 CPUs.

Both tests share one Ray instance (starting one costs seconds); the fake embedder keeps them fast.
"""

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fakes import HashEmbedder, write
from ingest.store import current_generation, open_index
from ingest.sync import index_folder
from ingest.types import Chunk

ray = pytest.importorskip("ray")  # the dev extra installs it

TESTS = Path(__file__).resolve().parent
SMALL = {"chunk_size": 12, "overlap": 2}  # many chunks from a few short files


def let_workers_import_tests(patch: pytest.MonkeyPatch) -> None:
    """Workers import the fake embedder from tests/ (pickled by reference): put it on the path that the Ray
    processes started after this inherit."""
    patch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")]))
    patch.setenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="module")
def local_ray():
    with pytest.MonkeyPatch.context() as patch:
        let_workers_import_tests(patch)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        yield
        ray.shutdown()


@pytest.fixture
def folder(tmp_path):
    docs = tmp_path / "docs"
    long_text = "\n\n".join(f"Paragraph {i} of the harbour survey: tide gauge {i} read {i * 7} cm." for i in range(40))
    write(docs, "survey.md", f"# Survey\n\n## Tides\n\n{long_text}")
    write(docs, "animals.txt", "The quokka lives on Rottnest Island and smiles for photographs.")
    write(docs, "finance/q3.md", "# Q3\n\nRevenue rose 12% on harbour fees.")
    write(docs, "empty.txt", "   \n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    write(docs, ".rag-acl.toml", 'default = "allow"\n[[rules]]\npath = "finance/**"\nallow = ["user:carol"]\n')
    return docs


def snapshot(index_dir: Path) -> tuple[list, np.ndarray]:
    live = open_index(index_dir)
    try:
        principals = dict(live.catalog.chunk_principals())
        rows = [
            (c.id, c.source, c.start, c.end, c.page, c.heading, c.text, sorted(principals[c.id]))
            for c in sorted(live.catalog.iter_chunks(), key=lambda c: c.id)
        ]
        return rows, live.vectors.reconstruct(np.array([r[0] for r in rows], dtype=np.int64))
    finally:
        live.close()


def assert_same_index(a: Path, b: Path) -> None:
    rows_a, vectors_a = snapshot(a)
    rows_b, vectors_b = snapshot(b)
    assert rows_a == rows_b  # chunk ids, sources, offsets, pages, headings, texts, permissions
    np.testing.assert_allclose(vectors_a, vectors_b, atol=1e-5)


def test_ray_engine_builds_the_same_index_as_a_local_run(local_ray, folder, tmp_path):
    from ingest.ray_engine import RayEngine

    engine = RayEngine(HashEmbedder)
    local = index_folder(folder, tmp_path / "local", HashEmbedder(), progress=False, **SMALL)
    remote = index_folder(folder, tmp_path / "ray", HashEmbedder(), progress=False, **SMALL, engine=engine)
    assert remote.chunks > 20 and (remote.added, remote.chunks) == (local.added, local.chunks)
    assert sorted((s.path, s.reason) for s in remote.skipped) == sorted((s.path, s.reason) for s in local.skipped)
    assert_same_index(tmp_path / "local", tmp_path / "ray")
    assert_same_policy_view(tmp_path / "local", tmp_path / "ray", local, remote)

    # Incremental: one file changed, one deleted, one emptied (its old text must go), one added; only the changed
    # ones go through the pipeline.
    write(folder, "animals.txt", "The quokka lives on Rottnest Island. It is a small marsupial.")
    (folder / "finance" / "q3.md").unlink()
    write(folder, "survey.md", "  \n")
    write(folder, "notes.md", "# Notes\n\nThe ferry leaves at 07:45.")
    local = index_folder(folder, tmp_path / "local", HashEmbedder(), progress=False, **SMALL)
    remote = index_folder(folder, tmp_path / "ray", HashEmbedder(), progress=False, **SMALL, engine=engine)
    assert (remote.added, remote.updated, remote.deleted) == (local.added, local.updated, local.deleted) == (1, 1, 2)
    assert sorted((s.path, s.reason) for s in remote.skipped) == sorted((s.path, s.reason) for s in local.skipped)
    assert remote.chunks_embedded == local.chunks_embedded
    assert_same_index(tmp_path / "local", tmp_path / "ray")
    assert_same_policy_view(tmp_path / "local", tmp_path / "ray", local, remote)


def assert_same_policy_view(a: Path, b: Path, report_a, report_b) -> None:
    """The rule coverage that `rag status` shows and the run's policy warnings count the documents indexed, not the
    files found empty on the engine's workers."""
    coverage = []
    for index_dir in (a, b):
        live = open_index(index_dir)
        try:
            coverage.append(live.catalog.get_meta("policy")["coverage"])
        finally:
            live.close()
    assert coverage[0] == coverage[1]
    assert report_a.warnings == report_b.warnings


class DiesOnce:
    """An embedder factory whose first embedder kills its worker process mid-batch (once per marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __call__(self):
        embedder = HashEmbedder()
        marker, embed = self.marker, embedder.embed

        def embed_or_die(texts):
            if not marker.exists():
                marker.write_text("killed")
                os._exit(1)
            return embed(texts)

        embedder.embed = embed_or_die
        return embedder


def test_a_killed_embedding_worker_is_retried_and_the_index_is_the_same(local_ray, folder, tmp_path):
    from ingest.ray_engine import RayEngine

    for name in ("local", "ray"):  # the same first generation in both, built locally
        index_folder(folder, tmp_path / name, HashEmbedder(), progress=False, **SMALL)
    write(folder, "late.md", "# Late\n\nA file added after the first run, embedded by a worker that dies once.")
    index_folder(folder, tmp_path / "local", HashEmbedder(), progress=False, **SMALL)
    before = current_generation(tmp_path / "ray")
    index_folder(
        folder, tmp_path / "ray", HashEmbedder(), progress=False, **SMALL, engine=RayEngine(DiesOnce(tmp_path / "m"))
    )
    assert (tmp_path / "m").exists()  # a worker did die
    assert current_generation(tmp_path / "ray") != before
    assert_same_index(tmp_path / "local", tmp_path / "ray")


class RecordsEachEmbedder:
    """An embedder factory whose embedders write down ``note()`` in each process that embeds (the parsing actors
    load an embedder too, for its token counter, but never embed). ``note`` must be importable by the workers."""

    def __init__(self, folder: Path, note: Callable[[], str]) -> None:
        self.folder, self.note = folder, note

    def __call__(self):
        embedder, folder, note = HashEmbedder(), self.folder, self.note
        embed = embedder.embed

        def embed_and_record(texts):
            (folder / f"actor-{os.getpid()}").write_text(note())
            return embed(texts)

        embedder.embed = embed_and_record
        return embedder


def torch_threads() -> str:
    import torch

    return str(torch.get_num_threads())


def test_on_a_cpu_node_one_embedder_actor_embeds_on_all_its_cores_and_the_callers_ray_context_is_restored(
    local_ray, folder, tmp_path
):
    from ray.data import DataContext

    from ingest.ray_engine import RayEngine

    record = tmp_path / "actors"
    record.mkdir()
    engine = RayEngine(RecordsEachEmbedder(record, torch_threads))
    options = DataContext.get_current().execution_options
    options.preserve_order = False  # the caller's own setting
    index_folder(folder, tmp_path / "ray", HashEmbedder(), progress=False, **SMALL, engine=engine)
    # Ray would give a one-CPU actor one thread; the pool's single actor takes the node's two cores instead.
    assert [f.read_text() for f in record.iterdir()] == ["2"]
    assert DataContext.get_current().execution_options.preserve_order is False  # the run gave it back


def test_an_engine_that_fails_leaves_the_previous_generation_live(folder, tmp_path):
    class LostCluster:
        def parse(self, folder, changed, params, show):
            raise ConnectionError("the Ray cluster went away")

    index_folder(folder, tmp_path / "idx", HashEmbedder(), progress=False, **SMALL)
    before, rows_before = current_generation(tmp_path / "idx"), snapshot(tmp_path / "idx")[0]
    write(folder, "late.md", "# Late\n\nNever indexed.")
    with pytest.raises(ConnectionError):
        index_folder(folder, tmp_path / "idx", HashEmbedder(), progress=False, **SMALL, engine=LostCluster())
    assert current_generation(tmp_path / "idx") == before and snapshot(tmp_path / "idx")[0] == rows_before
    assert not list((tmp_path / "idx").glob("*.tmp"))


def test_a_node_without_the_folder_fails_the_run_with_the_reason_and_the_previous_generation_stays_live(
    local_ray, folder, tmp_path
):
    from ingest.errors import EngineError
    from ingest.ray_engine import RayEngine

    class FolderElsewhere(RayEngine):  # the workers' machine lacks the path the driver scanned
        def _stream(self, ray, scanned, changed, params):
            return super()._stream(ray, tmp_path / "not-mounted", changed, params)

    index_folder(folder, tmp_path / "idx", HashEmbedder(), progress=False, **SMALL)
    before, rows_before = current_generation(tmp_path / "idx"), snapshot(tmp_path / "idx")[0]
    write(folder, "late.md", "# Late\n\nNever indexed.")
    with pytest.raises(
        EngineError, match=r"not-mounted is not a folder on Ray node .*needs the folder at the same path"
    ):
        index_folder(
            folder, tmp_path / "idx", HashEmbedder(), progress=False, **SMALL, engine=FolderElsewhere(HashEmbedder)
        )
    assert current_generation(tmp_path / "idx") == before and snapshot(tmp_path / "idx")[0] == rows_before
    assert not list((tmp_path / "idx").glob("*.tmp"))


@pytest.mark.slow
def test_the_parsers_token_counter_counts_as_the_real_embedder_does():
    # Ray's parsing actors load only the tokenizer; a different count would move chunk boundaries.
    from ingest.embedding import load_embedder, load_token_counter

    texts = ["The quokka lives on Rottnest Island.", "naïve café — 12% über 07:45", "# Heading\n\nA line.\n" * 20]
    embedder, counter = load_embedder(progress=False), load_token_counter(None)
    assert [counter(t) for t in texts] == [embedder.token_len(t) for t in texts]


def test_an_engine_that_fails_mid_stream_leaves_the_previous_generation_live(folder, tmp_path):
    # Documents are written as they arrive, so a failure after the first leaves a half-written generation: removed.
    class LostAfterOne:
        def parse(self, folder, changed, params, show):
            yield [Chunk(0, 5, "early")], np.ones((1, HashEmbedder().dimension), dtype=np.float32), None
            raise ConnectionError("the Ray cluster went away")

    index_folder(folder, tmp_path / "idx", HashEmbedder(), progress=False, **SMALL)
    before, rows_before = current_generation(tmp_path / "idx"), snapshot(tmp_path / "idx")[0]
    write(folder, "a-late.md", "# Late\n\nWritten before the failure.")
    write(folder, "b-late.md", "# Later\n\nNever parsed.")
    with pytest.raises(ConnectionError):
        index_folder(folder, tmp_path / "idx", HashEmbedder(), progress=False, **SMALL, engine=LostAfterOne())
    assert current_generation(tmp_path / "idx") == before and snapshot(tmp_path / "idx")[0] == rows_before
    assert not list((tmp_path / "idx").glob("*.tmp"))


def test_an_engine_that_returns_fewer_documents_than_it_was_given_fails_the_run(folder, tmp_path):
    class Forgetful:
        def parse(self, folder, changed, params, show):
            return iter([([Chunk(0, 5, "first")], np.ones((1, HashEmbedder().dimension), dtype=np.float32), None)])

    index_folder(folder, tmp_path / "idx", HashEmbedder(), progress=False, **SMALL)
    before = current_generation(tmp_path / "idx")
    write(folder, "a-late.md", "# Late\n\nParsed.")
    write(folder, "b-late.md", "# Later\n\nForgotten by the engine.")
    with pytest.raises(ValueError):
        index_folder(folder, tmp_path / "idx", HashEmbedder(), progress=False, **SMALL, engine=Forgetful())
    assert current_generation(tmp_path / "idx") == before and not list((tmp_path / "idx").glob("*.tmp"))


def test_the_driver_writes_each_document_before_the_engine_parses_the_next(folder, tmp_path, monkeypatch):
    from ingest.catalog import Catalog

    events = []
    add_document = Catalog.add_document

    def recorded_add_document(self, source, *args):
        events.append(("written", source))
        return add_document(self, source, *args)

    class Recording:
        def parse(self, folder, changed, params, show):
            for item in changed:
                events.append(("parsed", item.source))
                yield [Chunk(0, 4, item.source)], np.ones((1, HashEmbedder().dimension), dtype=np.float32), None

    monkeypatch.setattr(Catalog, "add_document", recorded_add_document)
    report = index_folder(folder, tmp_path / "idx", HashEmbedder(), progress=False, **SMALL, engine=Recording())
    sources = ["animals.txt", "broken.pdf", "empty.txt", "finance/q3.md", "survey.md"]
    assert events == [(kind, source) for source in sources for kind in ("parsed", "written")]
    assert report.added == 5 and report.chunks_embedded == 5


def batch(*rows):
    """A pipeline batch as the embedder returns it: rows of (source, position, count, error)."""
    return {
        "source": np.array([r[0] for r in rows]),
        "position": np.array([r[1] for r in rows]),
        "count": np.array([r[2] for r in rows]),
        "error": np.array([r[3] for r in rows]),
        "empty": np.array(["empty file" if r[1] < 0 and not r[3] else "" for r in rows]),
        "start": np.array([r[1] * 10 for r in rows]),
        "end": np.array([r[1] * 10 + 9 for r in rows]),
        "text": np.array([f"{r[0]} #{r[1]}" for r in rows]),
        "page": np.full(len(rows), -1),
        "heading": np.array([""] * len(rows)),
        "vector": np.array([[float(r[1])] * 3 for r in rows], dtype=np.float32),
    }


def test_documents_are_handed_over_in_scan_order_as_soon_as_they_and_those_before_are_complete():
    from ingest.ray_engine import DocumentAssembler

    documents = DocumentAssembler(["a.md", "b.pdf", "c.txt", "d.md"])
    # b fails and c is complete before a is: nothing can go out until a's second chunk arrives.
    assert list(documents.add(batch(("a.md", 1, 2, ""), ("b.pdf", -1, 0, "not a PDF"), ("c.txt", 0, 1, "")))) == []
    out = list(documents.add(batch(("d.md", 0, 2, ""), ("a.md", 0, 2, ""))))
    assert [d[0] and [c.text for c in d[0]] for d in out] == [["a.md #0", "a.md #1"], None, ["c.txt #0"]]
    assert out[1][2] == "not a PDF" and out[0][1].tolist() == [[0.0] * 3, [1.0] * 3]
    with pytest.raises(RuntimeError, match=r"d\.md \(1 chunks arrived\)"):
        documents.check_complete()


def test_a_worker_indexes_a_file_only_if_it_holds_what_the_scan_read(folder):
    import hashlib

    from ingest.discovery import too_large
    from ingest.local_engine import CHANGED_SINCE_SCAN
    from ingest.ray_engine import _ParseAndChunk

    parse = _ParseAndChunk(str(folder), lambda: HashEmbedder().token_len, {**SMALL, "max_file_bytes": 10_000})
    scanned = hashlib.sha256((folder / "animals.txt").read_bytes()).hexdigest()
    rows = parse({"source": "animals.txt", "hash": scanned})
    assert rows[0]["error"] == "" and "quokka" in rows[0]["text"]
    # Changed after the scan, or swapped for a hard link to a file that other readers may see: not indexed now (the
    # driver keeps the last good version) and never under the scanned content's hash
    write(folder, "animals.txt", "Carol's salary review: confidential.")
    (changed,) = parse({"source": "animals.txt", "hash": scanned})
    assert changed["error"] == CHANGED_SINCE_SCAN and changed["text"] == ""
    (too_big,) = _ParseAndChunk(str(folder), lambda: HashEmbedder().token_len, {**SMALL, "max_file_bytes": 8})(
        {"source": "animals.txt", "hash": scanned}
    )
    assert too_big["error"] == too_large((folder / "animals.txt").stat().st_size, 8)
