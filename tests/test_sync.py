import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fakes import HashEmbedder, bump, write
from ingest.common import EmbedderMismatchError
from ingest.errors import IndexBusyError, IndexCorruptError
from ingest.store import open_index, writer_lock
from ingest.sync import index_folder
from rag.retrieval import Retriever


@pytest.fixture
def folder(tmp_path):
    docs = tmp_path / "docs"
    write(docs, "animals.txt", "The quokka lives on Rottnest Island and smiles for photographs.")
    write(docs, "guide/space.md", "# Space\n\nThe probe Vireo-9 reached orbit in March 2031.")
    write(docs, "recipes/bread.md", "# Bread\n\nKnead the rye dough for twelve minutes before proving.")
    return docs


def test_first_run_then_noop_embeds_nothing(folder, tmp_path):
    embedder = HashEmbedder()
    first = index_folder(folder, tmp_path / "idx", embedder)
    assert (first.added, first.documents) == (3, 3)
    assert first.chunks >= 3 and embedder.calls == first.chunks
    calls = embedder.calls
    second = index_folder(folder, tmp_path / "idx", embedder)
    assert (second.added, second.updated, second.deleted, second.unchanged) == (0, 0, 0, 3)
    assert embedder.calls == calls
    assert second.wrote_generation is None


def test_touch_without_content_change_is_unchanged(folder, tmp_path):
    embedder = HashEmbedder()
    index_folder(folder, tmp_path / "idx", embedder)
    calls = embedder.calls
    path = folder / "animals.txt"
    bump(path, path.read_text())
    report = index_folder(folder, tmp_path / "idx", embedder)
    assert report.unchanged == 3 and embedder.calls == calls


def test_update_add_delete_are_reported_and_searchable(folder, tmp_path):
    embedder = HashEmbedder()
    index_dir = tmp_path / "idx"
    index_folder(folder, index_dir, embedder)
    bump(folder / "animals.txt", "The wombat digs burrows in Tasmania.")
    write(folder, "new/ships.txt", "The schooner Marrow Gull sails from Tromso.")
    (folder / "recipes/bread.md").unlink()
    report = index_folder(folder, index_dir, embedder)
    assert (report.added, report.updated, report.deleted, report.unchanged) == (1, 1, 1, 1)
    retriever = Retriever(index_dir, embedder=embedder)
    sources = {r.source for r in retriever.search("wombat burrows Tasmania", k=10)}
    assert sources == {"animals.txt", "guide/space.md", "new/ships.txt"}
    top = retriever.search("schooner Marrow Gull", k=1)[0]
    assert top.source == "new/ships.txt" and "Tromso" in top.text
    texts = " ".join(r.text for r in retriever.search("quokka", k=10))
    assert "quokka" not in texts and "Knead" not in texts


def test_search_results_carry_offsets_into_the_document(folder, tmp_path):
    embedder = HashEmbedder()
    index_folder(folder, tmp_path / "idx", embedder)
    result = Retriever(tmp_path / "idx", embedder=embedder).search("Vireo-9 orbit", k=1)[0]
    assert result.source == "guide/space.md"
    assert (folder / result.source).read_text()[result.start : result.end] == result.text


def test_an_emptied_file_leaves_the_index_and_a_broken_one_keeps_its_last_good_version(folder, tmp_path):
    embedder = HashEmbedder()
    index_dir = tmp_path / "idx"
    index_folder(folder, index_dir, embedder)
    bump(folder / "animals.txt", "   \n")  # emptied: its old text must not stay searchable
    (folder / "guide/space.md").write_bytes(b"\x00" * 64)  # unreadable for now: the next run retries it
    report = index_folder(folder, index_dir, embedder)
    assert (report.deleted, report.unchanged) == (1, 2)
    assert {s.path: s.reason for s in report.skipped} == {
        "animals.txt": "empty file",
        "guide/space.md": "not text: contains NUL bytes",
    }
    sources = {r.source for r in Retriever(index_dir, embedder=embedder).search("quokka probe bread", k=10)}
    assert sources == {"guide/space.md", "recipes/bread.md"}


def test_a_file_changed_after_the_scan_hashed_it_keeps_its_last_good_version(folder, tmp_path, monkeypatch):
    import ingest.local_engine as local_engine

    embedder = HashEmbedder()
    index_dir = tmp_path / "idx"
    index_folder(folder, index_dir, embedder)
    bump(folder / "animals.txt", "The wombat digs burrows.")  # the version the scan reads and hashes
    parse = local_engine.LocalEngine.parse

    def parse_after_another_write(self, *args):  # the file changes again between the scan and its parse
        bump(folder / "animals.txt", "The numbat eats termites.")
        yield from parse(self, *args)

    monkeypatch.setattr(local_engine.LocalEngine, "parse", parse_after_another_write)
    report = index_folder(folder, index_dir, embedder)
    assert [(s.path, s.reason) for s in report.skipped] == [("animals.txt", local_engine.CHANGED_SINCE_SCAN)]
    assert (report.updated, report.unchanged) == (0, 3)
    texts = {r.text for r in Retriever(index_dir, embedder=embedder).search("quokka wombat numbat", k=10)}
    assert any("quokka" in t for t in texts) and not any("wombat" in t or "numbat" in t for t in texts)


def test_the_local_engine_embeds_a_batch_at_a_time_and_writes_every_document(folder, tmp_path, monkeypatch):
    import ingest.local_engine as local_engine

    monkeypatch.setattr(local_engine, "EMBED_BATCH", 2)
    for n in range(7):
        write(folder, f"notes/{n}.txt", f"Note {n} is about the number {n}.")
    embedder = HashEmbedder()
    sizes = []
    embed = embedder.embed
    embedder.embed = lambda texts: sizes.append(len(texts)) or embed(texts)
    report = index_folder(folder, tmp_path / "idx", embedder)
    assert (report.added, report.chunks_embedded) == (10, sum(sizes))
    assert len(sizes) > 1 and max(sizes) <= 2  # one-chunk files: the driver never holds more than a batch
    assert open_index(tmp_path / "idx").catalog.documents().keys() == {
        "animals.txt",
        "guide/space.md",
        "recipes/bread.md",
        *(f"notes/{n}.txt" for n in range(7)),
    }


def test_broken_files_are_skipped_and_the_rest_indexed(folder, tmp_path):
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage")
    (folder / "noise.txt").write_bytes(bytes(range(256)) * 8)
    (folder / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    report = index_folder(folder, tmp_path / "idx", HashEmbedder())
    assert report.documents == 3
    reasons = {s.path: s.reason for s in report.skipped}
    assert set(reasons) == {"broken.pdf", "noise.txt", "sheet.xlsx"}
    assert all(reasons.values())


def test_policy_and_hidden_files_are_never_indexed(folder, tmp_path):
    write(folder, ".rag-acl.toml", 'default = "allow"\n# secret-policy-word\n')
    write(folder, ".hidden/notes.txt", "hidden-folder-word")
    write(folder, ".secret.txt", "hidden-file-word")
    embedder = HashEmbedder()
    index_folder(folder, tmp_path / "idx", embedder)
    live = open_index(tmp_path / "idx")
    sources = set(live.catalog.documents())
    text = " ".join(c.text for c in live.catalog.iter_chunks())
    live.close()
    assert sources == {"animals.txt", "guide/space.md", "recipes/bread.md"}
    for word in ("secret-policy-word", "hidden-folder-word", "hidden-file-word", "default"):
        assert word not in text


def test_index_dir_inside_the_folder_is_not_indexed(folder):
    embedder = HashEmbedder()
    index_folder(folder, folder / "index-inside", embedder)
    report = index_folder(folder, folder / "index-inside", embedder)
    assert report.documents == 3 and report.unchanged == 3 and not report.skipped


def test_other_embedder_is_a_clear_error(folder, tmp_path):
    index_folder(folder, tmp_path / "idx", HashEmbedder())
    with pytest.raises(EmbedderMismatchError, match="hash-embedder"):
        index_folder(folder, tmp_path / "idx", HashEmbedder(dimension=32, name="other"))
    with pytest.raises(EmbedderMismatchError):
        Retriever(tmp_path / "idx", embedder=HashEmbedder(name="other")).search("quokka")


def test_rebuild_replaces_the_index(folder, tmp_path):
    index_folder(folder, tmp_path / "idx", HashEmbedder())
    report = index_folder(folder, tmp_path / "idx", HashEmbedder(dimension=32, name="other"), rebuild=True)
    assert report.added == 3
    assert open_index(tmp_path / "idx").meta("embedder") == "other"


def test_lock_makes_a_second_writer_fail_clearly(folder, tmp_path):
    with writer_lock(tmp_path / "idx"):
        with pytest.raises(IndexBusyError, match="busy"):
            index_folder(folder, tmp_path / "idx", HashEmbedder())
    assert index_folder(folder, tmp_path / "idx", HashEmbedder()).added == 3


def test_catalog_faiss_mismatch_is_reported(folder, tmp_path):
    from ingest.store import VECTORS_FILE, current_generation
    from ingest.vectors import VectorIndex

    index_folder(folder, tmp_path / "idx", HashEmbedder())
    gen_dir = tmp_path / "idx" / current_generation(tmp_path / "idx")
    VectorIndex.create(64).save(gen_dir / VECTORS_FILE)  # an empty FAISS beside a full catalog
    with pytest.raises(IndexCorruptError, match="--rebuild"):
        open_index(tmp_path / "idx")


def test_garbage_vectors_file_is_reported(folder, tmp_path):
    from ingest.store import VECTORS_FILE, current_generation

    index_folder(folder, tmp_path / "idx", HashEmbedder())
    (tmp_path / "idx" / current_generation(tmp_path / "idx") / VECTORS_FILE).write_bytes(b"not faiss")
    with pytest.raises(IndexCorruptError):
        open_index(tmp_path / "idx")


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    from fakes import HashEmbedder
    from ingest import store
    from ingest.sync import index_folder

    def die(self):  # the FAISS file is written; the catalog never commits
        assert (self.tmp_dir / store.VECTORS_FILE).exists()
        os._exit(17)

    store.GenerationWriter._commit_catalog = die
    index_folder({folder!r}, {index_dir!r}, HashEmbedder())
    """
)


def test_killed_between_faiss_write_and_catalog_commit_keeps_previous_index(folder, tmp_path):
    index_dir = tmp_path / "idx"
    embedder = HashEmbedder()
    index_folder(folder, index_dir, embedder)
    bump(folder / "animals.txt", "The wombat digs burrows in Tasmania.")
    script = CRASH_SCRIPT.format(tests=str(Path(__file__).parent), folder=str(folder), index_dir=str(index_dir))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 17, done.stderr
    # The previous generation is still live and answers with the old content.
    top = Retriever(index_dir, embedder=embedder).search("quokka Rottnest", k=1)[0]
    assert top.source == "animals.txt" and "quokka" in top.text
    # The next run completes the work.
    report = index_folder(folder, index_dir, embedder)
    assert report.updated == 1
    top = Retriever(index_dir, embedder=embedder).search("wombat Tasmania", k=1)[0]
    assert "wombat" in top.text
    assert not list(index_dir.glob("*.tmp"))


def test_every_hit_carries_its_documents_opening(tmp_path):
    docs = tmp_path / "docs"
    header = "INCIDENT REPORT INC-7\n\nService: Harbourlink telemetry\nDate: 19 February 2031\n\n"
    body = "".join(
        f"Step {n}: the gateway node {n} was restarted and checked by the on-call engineer.\n" for n in range(60)
    )
    write(docs, "incident.txt", header + body + "Readings from 187 stations arrived late.")
    index_folder(docs, tmp_path / "idx", HashEmbedder())
    retriever = Retriever(tmp_path / "idx", embedder=HashEmbedder())
    results = retriever.search("How many stations delivered readings late?", k=20)
    last = next(r for r in results if "187 stations" in r.text)
    assert "Harbourlink" not in last.text  # the subject is named only at the top of the document...
    assert last.lead.startswith("INCIDENT REPORT INC-7") and "Harbourlink" in last.lead  # ...which comes along
    assert all(r.lead == last.lead for r in results)
