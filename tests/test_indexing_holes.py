"""Regression tests for the red-team findings of issue 16, one or more per finding, named after it (HashEmbedder)."""

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

import ingest.embedding
import ingest.sync
import rag.retrieval
from fakes import HashEmbedder, write
from ingest.common import ModelLoadError, UsageError
from ingest.discovery import is_case_insensitive, read_inside, walk
from ingest.errors import IndexCorruptError, IndexWriteError, LoadError, PolicyError
from ingest.store import CATALOG_FILE, VECTORS_FILE, current_generation, open_index
from ingest.sync import index_folder
from rag.cli import cli
from rag.retrieval import Retriever
from serving import patch_embedder

POLICY = """
default = "deny"
[groups]
finance = ["alice", "bob"]
[[rules]]
path = "public/**"
allow = ["*"]
[[rules]]
path = "common/**"
allow = ["*"]
[[rules]]
path = "finance/**"
allow = ["group:finance"]
"""
SECRET = "The secret merger codename is Bluefalcon and the price is 91 million."


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    write(folder, "public/welcome.md", "Welcome. The canteen opens at noon and serves soup.")
    write(folder, "finance/secret.txt", SECRET)
    write(folder, ".rag-acl.toml", POLICY)
    return folder


def everything(index_dir: Path, user=None) -> str:
    """All text a user can retrieve, by a query that every chunk matches by embedding (k covers the whole index)."""
    retriever = Retriever(index_dir, embedder=HashEmbedder())
    results = retriever.search("merger codename Bluefalcon canteen soup policy default", k=1000, user=user)
    return "\n".join(f"{r.source}: {r.text}" for r in results)


def reasons(report) -> dict[str, str]:
    return {s.path: s.reason for s in report.skipped}


@pytest.fixture
def fake_models(monkeypatch):
    """The CLI's model loaders give the hash embedder."""
    return patch_embedder(monkeypatch)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


# --- finding 1: symlinks ------------------------------------------------------------------------------------------


def test_finding1_symlink_file_into_public(docs, tmp_path):
    (docs / "public/notes.txt").symlink_to("../finance/secret.txt")
    report = index_folder(docs, tmp_path / "idx", HashEmbedder())
    assert "Bluefalcon" not in everything(tmp_path / "idx")
    assert "public/notes.txt" not in everything(tmp_path / "idx", user="alice")  # never under the link's name
    assert "finance/secret.txt: " + SECRET in everything(tmp_path / "idx", user="alice")
    assert reasons(report)["public/notes.txt"].startswith("symlink to finance/secret.txt; not followed")


def test_finding1_directory_link_does_not_hide_the_real_folder(docs, tmp_path):
    (docs / "common").mkdir()
    (docs / "common/fin").symlink_to("../finance", target_is_directory=True)
    report = index_folder(docs, tmp_path / "idx", HashEmbedder())
    assert "Bluefalcon" not in everything(tmp_path / "idx")
    assert "finance/secret.txt" in everything(tmp_path / "idx", user="bob")
    coverage = dict(open_index(tmp_path / "idx").meta("policy")["coverage"])
    assert coverage["rule 3 (finance/**)"] == 1
    assert reasons(report)["common/fin"].startswith("symlink to finance; not followed")


def test_finding1_policy_is_never_indexed_under_any_name(docs, tmp_path):
    (docs / "public/policy.txt").symlink_to("../.rag-acl.toml")
    os.link(docs / ".rag-acl.toml", docs / "public/policy-copy.txt")  # a hard link: the same inode, another name
    report = index_folder(docs, tmp_path / "idx", HashEmbedder())
    live = open_index(tmp_path / "idx")
    text = " ".join(c.text for c in live.catalog.iter_chunks())
    live.close()
    assert "group:finance" not in text and "default" not in text
    assert "public/policy.txt" in reasons(report) and "public/policy-copy.txt" not in reasons(report)
    # An --acl file inside the folder, under a name with a supported suffix, and a hard link to it
    acl = write(docs, "public/acl.txt", POLICY)
    os.link(acl, docs / "public/acl-link.md")
    for name in (".rag-acl.toml", "public/policy-copy.txt", "public/policy.txt"):
        (docs / name).unlink()
    index_folder(docs, tmp_path / "idx2", HashEmbedder(), acl=acl)
    live = open_index(tmp_path / "idx2")
    assert not any("group:finance" in c.text for c in live.catalog.iter_chunks())
    assert set(live.catalog.documents()) == {"public/welcome.md", "finance/secret.txt"}
    live.close()


def test_finding1_file_swapped_for_a_link_after_discovery_is_not_read(docs, tmp_path, monkeypatch):
    outside = write(tmp_path / "outside", "stolen.txt", "OUTSIDE-WORD from another folder")
    real_walk = ingest.sync.walk

    def walk_then_swap(folder, excluded=()):
        found = real_walk(folder, excluded)
        (docs / "public/welcome.md").unlink()
        (docs / "public/welcome.md").symlink_to(outside)  # the race: after discovery, before the read
        (docs / "finance/secret.txt").rename(docs / "finance/old.txt")
        write(docs, "finance/secret.txt", "a different file under the same name")  # another inode
        return found

    monkeypatch.setattr(ingest.sync, "walk", walk_then_swap)
    report = index_folder(docs, tmp_path / "idx", HashEmbedder())
    assert "OUTSIDE-WORD" not in everything(tmp_path / "idx", user="alice")
    assert "different file" not in everything(tmp_path / "idx", user="alice")
    why = reasons(report)
    assert why["public/welcome.md"].startswith("changed during indexing: now a symlink")
    assert why["finance/secret.txt"].startswith("changed during indexing: replaced by another file")


def test_finding1_folder_swapped_for_a_link_after_discovery_is_not_read(docs, tmp_path):
    found, _ = walk(docs)
    [item] = [f for f in found if f.source == "public/welcome.md"]
    write(tmp_path / "elsewhere", "welcome.md", "OUTSIDE")
    (docs / "public").rename(tmp_path / "moved")
    (docs / "public").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(LoadError, match="now a symlink"):
        read_inside(docs, "public/welcome.md", expected=item)


def test_finding1_hard_link_under_other_permissions_is_refused(docs, tmp_path):
    os.link(docs / "finance/secret.txt", docs / "public/minutes.txt")
    report = index_folder(docs, tmp_path / "idx", HashEmbedder())
    assert "Bluefalcon" not in everything(tmp_path / "idx")
    assert "Bluefalcon" not in everything(tmp_path / "idx", user="alice")  # neither name: fail closed
    assert "under other permissions" in reasons(report)["public/minutes.txt"]
    assert "under other permissions" in reasons(report)["finance/secret.txt"]


# --- finding 2: fail closed ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["removed", "broken symlink", "renamed"])
def test_finding2_missing_policy_fails_closed(docs, tmp_path, how):
    index_folder(docs, tmp_path / "idx", HashEmbedder())
    policy = docs / ".rag-acl.toml"
    if how == "removed":
        policy.unlink()
    elif how == "broken symlink":
        policy.unlink()
        policy.symlink_to(tmp_path / "gone.toml")
    else:
        policy.rename(docs / ".rag-acl.toml.bak")
    with pytest.raises(PolicyError, match="--no-acl|broken symlink"):
        index_folder(docs, tmp_path / "idx", HashEmbedder())
    assert "Bluefalcon" not in everything(tmp_path / "idx")  # the live index is untouched


def test_finding2_no_acl_opens_it_and_says_so(docs, tmp_path):
    index_folder(docs, tmp_path / "idx", HashEmbedder())
    (docs / ".rag-acl.toml").unlink()
    with pytest.raises(PolicyError, match="built with the permission policy .*rag-acl.toml"):
        index_folder(docs, tmp_path / "idx", HashEmbedder(), rebuild=True)  # a rebuild fails closed too
    report = index_folder(docs, tmp_path / "idx", HashEmbedder(), no_acl=True)
    assert report.permissions_changed == 1
    assert any("all 2 documents are now readable by everyone, anonymous included" in w for w in report.warnings)
    assert "Bluefalcon" in everything(tmp_path / "idx")


def test_finding2_cli_without_a_policy_is_one_line_naming_no_acl(docs, tmp_path, fake_models):
    assert run("index", docs, "--index-dir", tmp_path / "idx").exit_code == 0
    (docs / ".rag-acl.toml").unlink()
    result = run("index", docs, "--index-dir", tmp_path / "idx")
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "--no-acl" in result.output
    result = run("index", docs, "--index-dir", tmp_path / "idx", "--no-acl")
    assert result.exit_code == 0 and "readable by everyone, anonymous included" in result.stderr
    assert run("index", docs, "--acl", docs / "x.toml", "--no-acl").exit_code == 2


def test_finding2_rules_matching_nothing_warn(docs, tmp_path):
    (docs / ".rag-acl.toml").write_text(
        POLICY + '[[rules]]\npath = "Finance/**"\nallow = ["*"]\n[[rules]]\npath = "hr/"\nallow = ["*"]\n'
        '[[rules]]\npath = "public/../legal/**"\nallow = ["*"]\n'
    )
    report = index_folder(docs, tmp_path / "idx", HashEmbedder())
    text = "\n".join(report.warnings)
    assert "rule 2 (path 'common/**') matches no document" in text
    assert "rule 4 (path 'Finance/**') matches no document: it would match ignoring case" in text
    assert "rule 5 (path 'hr/') matches no document: it names a folder; write 'hr/**'" in text
    assert "rule 6 (path 'public/../legal/**') contains '..'" in text
    assert not any("rule 1 " in w or "rule 3 " in w for w in report.warnings)


# --- finding 3: one bad name never stops a run ---------------------------------------------------------------------


def test_finding3_undecodable_file_name_is_a_skip_reason(docs, tmp_path, fake_models):
    with open(os.path.join(os.fsencode(docs / "public"), b"caf\xe9-menu.txt"), "wb") as handle:
        handle.write(b"coffee")
    os.mkdir(os.path.join(os.fsencode(docs), b"d\xe9p\xf4t"))
    report = index_folder(docs, tmp_path / "idx", HashEmbedder())
    assert reasons(report)["public/caf\\xe9-menu.txt"] == "file name is not valid UTF-8; rename it to index it"
    assert reasons(report)["d\\xe9p\\xf4t"] == "folder name is not valid UTF-8; rename it to index it"
    assert report.documents == 2
    result = run("index", docs, "--index-dir", tmp_path / "idx2", "--json")
    assert result.exit_code == 0 and "caf\\\\xe9-menu.txt" in result.stdout
    json.loads(result.stdout)


def test_finding3_symlink_loop_is_a_skip_reason(docs, tmp_path):
    (docs / "public/self.txt").symlink_to("self.txt")
    (docs / "public/ping.md").symlink_to("pong.md")
    (docs / "public/pong.md").symlink_to("ping.md")
    report = index_folder(docs, tmp_path / "idx", HashEmbedder())
    assert reasons(report)["public/self.txt"] == "symlink loop; not followed"
    assert reasons(report)["public/ping.md"] == "symlink loop; not followed"
    assert report.documents == 2


def test_finding3_unreadable_folder_and_vanished_file_are_skip_reasons(docs, tmp_path, monkeypatch):
    write(docs, "locked/a.txt", "locked away")
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    real_walk = ingest.sync.walk

    def walk_then_delete(folder, excluded=()):
        found = real_walk(folder, excluded)
        (docs / "public/welcome.md").unlink()
        return found

    monkeypatch.setattr(ingest.sync, "walk", walk_then_delete)
    report = index_folder(docs, tmp_path / "idx", HashEmbedder())
    assert reasons(report)["locked"] == "cannot list folder: Permission denied"
    assert reasons(report)["public/welcome.md"] == "cannot read file: No such file or directory"
    assert report.documents == 1


def test_finding3_revocation_applies_with_bad_names_present(docs, tmp_path):
    (docs / "public/self.txt").symlink_to("self.txt")
    with open(os.path.join(os.fsencode(docs), b"caf\xe9.txt"), "wb") as handle:
        handle.write(b"x")
    index_folder(docs, tmp_path / "idx", HashEmbedder())
    assert "Bluefalcon" in everything(tmp_path / "idx", user="bob")
    (docs / ".rag-acl.toml").write_text(POLICY.replace('["alice", "bob"]', '["alice"]'))
    index_folder(docs, tmp_path / "idx", HashEmbedder())
    assert "Bluefalcon" not in everything(tmp_path / "idx", user="bob")


# --- finding 4: keyword ranking independent of unreadable documents ------------------------------------------------


PUBLIC_DOCS = {
    "public/canteen.md": "The canteen serves soup at noon. Soup of the day is lentil soup.",
    "public/travel.md": "Travel budget approvals go to your manager. Budget limits apply per trip.",
    "public/it.md": "The VPN password rotates monthly. Ask IT about the budget for laptops.",
    "public/safety.md": "Fire drills happen quarterly; the assembly point is the car park.",
    "public/merger-faq.md": "Questions about any merger go to communications. No merger is planned.",
}
RESTRICTED_DOCS = {
    f"finance/q{n}.txt": f"Budget merger soup budget {n}: the merger budget, soup budget and VPN budget." * (n % 3 + 1)
    for n in range(40)
}
QUERIES = ["budget", "merger budget soup", "VPN password", "soup of the day", "fire drills car park", "lentil"]


def build(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    folder = tmp_path / name
    for source, text in files.items():
        write(folder, source, text)
    write(folder, ".rag-acl.toml", POLICY)
    index_folder(folder, tmp_path / f"{name}-idx", HashEmbedder())
    return tmp_path / f"{name}-idx"


def test_finding4_results_do_not_depend_on_unreadable_documents(tmp_path):
    """Two indexes that differ only in restricted documents answer every user who may not read them alike:
    the same results, order, scores, chunk ids and JSON, in both retrieval modes and for ask's retrieval."""
    from test_answer import ScriptedGenerator

    from rag.answer import answer_with_details

    without = build(tmp_path, "without", PUBLIC_DOCS)
    with_restricted = build(tmp_path, "with", {**PUBLIC_DOCS, **RESTRICTED_DOCS})
    a, b = Retriever(without, embedder=HashEmbedder()), Retriever(with_restricted, embedder=HashEmbedder())
    assert b.search("budget", k=5, user="alice")[0].source.startswith("finance/")  # the restricted ones do compete
    for user in (None, "mallory", "carol"):
        for mode in ("hybrid", "dense"):
            for query in QUERIES:
                for k in (1, 3, 5):
                    got_a = [r.to_json() for r in a.search(query, k=k, user=user, mode=mode)]
                    got_b = [r.to_json() for r in b.search(query, k=k, user=user, mode=mode)]
                    assert json.dumps(got_a) == json.dumps(got_b), (user, mode, query, k)
        for query in QUERIES:
            answers = [answer_with_details(r, ScriptedGenerator("unknown"), query, user=user)[0] for r in (a, b)]
            for answer in answers:
                answer.timings.clear()
            assert answers[0].to_json() == answers[1].to_json(), (user, query)


def test_finding4_keyword_lookup_never_touches_an_unreadable_class(tmp_path):
    """No timing channel: an anonymous keyword lookup runs no statement on the restricted documents' table."""
    index_dir = build(tmp_path, "with", {**PUBLIC_DOCS, **RESTRICTED_DOCS})
    retriever = Retriever(index_dir, embedder=HashEmbedder())
    catalog = retriever.index.catalog
    classes = dict(catalog._db.execute("SELECT principals, id FROM classes").fetchall())
    restricted_table = f"fts_class_{classes[json.dumps(['group:finance'])]}"
    public_table = f"fts_class_{classes[json.dumps(['*'])]}"
    statements: list[str] = []
    catalog._db.set_trace_callback(statements.append)
    retriever.search("merger budget soup", k=5, user=None)
    catalog._db.set_trace_callback(None)
    assert any(public_table in s for s in statements)
    assert not any(restricted_table in s for s in statements)


# --- finding 5: normalised, case-blind matching ---------------------------------------------------------------------


def test_finding5_nfd_folder_matches_an_nfc_rule(tmp_path):
    folder = tmp_path / "docs"
    write(folder, "re\u0301sume\u0301s/cv.txt", SECRET)  # NFD, as macOS writes names
    write(folder, "public/a.md", "Welcome to the canteen.")
    write(folder, ".rag-acl.toml", 'default = "allow"\n[[rules]]\npath = "r\u00e9sum\u00e9s/**"\nallow = ["user:hr"]\n')
    report = index_folder(folder, tmp_path / "idx", HashEmbedder())
    assert "Bluefalcon" not in everything(tmp_path / "idx")
    assert "Bluefalcon" in everything(tmp_path / "idx", user="hr")
    assert report.warnings == []


def test_finding5_case_blind_where_the_file_system_is(tmp_path, monkeypatch):
    folder = tmp_path / "docs"
    write(folder, "Board/minutes.txt", SECRET)
    write(folder, ".rag-acl.toml", 'default = "allow"\n[[rules]]\npath = "board/**"\nallow = ["user:ceo"]\n')
    monkeypatch.setattr(ingest.sync, "is_case_insensitive", lambda folder: True)
    index_folder(folder, tmp_path / "idx", HashEmbedder())
    assert "Bluefalcon" not in everything(tmp_path / "idx")
    assert "Bluefalcon" in everything(tmp_path / "idx", user="ceo")


def test_finding5_case_sensitivity_is_detected(tmp_path):
    folder = tmp_path / "2031"  # no letters: the test is decided by an entry's name
    write(folder, "a.txt", "x")
    assert not is_case_insensitive(folder)  # this file system tells "a.txt" from "A.TXT"
    os.link(folder / "a.txt", folder / "A.TXT")  # the same inode under the swapped-case name: what macOS shows
    assert is_case_insensitive(folder)
    assert not is_case_insensitive(tmp_path / "docs-missing")


# --- finding 6: deletion that deletes -------------------------------------------------------------------------------


def index_bytes(index_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(index_dir.rglob("*")) if p.is_file())


def test_finding6_deleted_words_are_gone_from_the_files(docs, tmp_path, fake_models):
    write(docs, "finance/zanzibar-plan.txt", "Project Quixotrel buys the Zanzibar harbour for 12 million.")
    index_dir = tmp_path / "idx"
    index_folder(docs, index_dir, HashEmbedder())
    assert b"Quixotrel" in index_bytes(index_dir)
    (docs / "finance/zanzibar-plan.txt").unlink()
    report = index_folder(docs, index_dir, HashEmbedder())
    assert report.deleted == 1
    data = index_bytes(index_dir)
    assert b"Quixotrel" not in data and b"quixotrel" not in data and b"zanzibar-plan" not in data
    assert [p.name for p in index_dir.glob("gen-*")] == [current_generation(index_dir)]  # no previous generation
    live = open_index(index_dir)
    assert live.catalog.keyword_row_count() == live.catalog.chunk_count() == live.vectors.ntotal
    live.close()
    result = run("index", docs, "--index-dir", index_dir, "--purge", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["deleted"] == 0 and current_generation(index_dir) == "gen-000003"
    assert b"Quixotrel" not in index_bytes(index_dir)


def test_finding6_a_permission_change_moves_the_words_out_of_the_old_class(docs, tmp_path):
    index_dir = tmp_path / "idx"
    index_folder(docs, index_dir, HashEmbedder())
    (docs / ".rag-acl.toml").write_text(POLICY.replace('allow = ["group:finance"]', 'allow = ["user:alice"]'))
    report = index_folder(docs, index_dir, HashEmbedder())
    assert report.permissions_changed == 1
    live = open_index(index_dir)
    classes = {p for (p,) in live.catalog._db.execute("SELECT principals FROM classes")}
    assert classes == {json.dumps(["*"]), json.dumps(["user:alice"])}  # the finance class and its table are gone
    live.close()
    assert "Bluefalcon" in everything(index_dir, user="alice") and "Bluefalcon" not in everything(index_dir, "bob")


# --- finding 7: the index dir is ours alone -------------------------------------------------------------------------


def test_finding7_never_deletes_folders_it_did_not_create(docs, tmp_path):
    mine = tmp_path / "my-stuff"
    write(mine, "gen-000000/thesis.txt", "my thesis")
    write(mine, "gen-000001.tmp/draft.txt", "my draft")
    with pytest.raises(UsageError, match="holds other files and no docrag index"):
        index_folder(docs, mine, HashEmbedder())
    assert (mine / "gen-000000/thesis.txt").exists() and (mine / "gen-000001.tmp/draft.txt").exists()
    index_dir = tmp_path / "idx"
    index_folder(docs, index_dir, HashEmbedder())
    write(index_dir, "gen-000000/thesis.txt", "my thesis")  # the user's folders, in our index dir
    write(index_dir, "gen-000009.tmp/draft.txt", "my draft")
    write(docs, "public/new.md", "A new page about the canteen.")
    index_folder(docs, index_dir, HashEmbedder())
    write(docs, "public/newer.md", "Another page about the car park.")
    index_folder(docs, index_dir, HashEmbedder())
    assert (index_dir / "gen-000000/thesis.txt").exists() and (index_dir / "gen-000009.tmp/draft.txt").exists()


def test_finding7_current_is_validated(docs, tmp_path, fake_models):
    index_dir = tmp_path / "idx"
    index_folder(docs, index_dir, HashEmbedder())
    (index_dir / "CURRENT").write_text("../../etc\n")
    with pytest.raises(IndexCorruptError, match="not a generation"):
        open_index(index_dir)
    result = run("search", "soup", "--index-dir", index_dir)
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "CURRENT names '../../etc'" in result.output


# --- finding 8: trust in the index dir --------------------------------------------------------------------------------


def test_finding8_index_files_are_private(docs, tmp_path):
    old = os.umask(0o022)
    try:
        index_folder(docs, tmp_path / "idx", HashEmbedder())
    finally:
        os.umask(old)
    index_dir = tmp_path / "idx"
    gen = index_dir / current_generation(index_dir)
    assert stat.S_IMODE(index_dir.stat().st_mode) == 0o700 and stat.S_IMODE(gen.stat().st_mode) == 0o700
    for path in [index_dir / "CURRENT", index_dir / "lock", gen / CATALOG_FILE, gen / VECTORS_FILE]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_finding8_embedder_path_from_index_metadata_is_not_loaded(docs, tmp_path, monkeypatch):
    index_dir = tmp_path / "idx"
    index_folder(docs, index_dir, HashEmbedder())
    db = sqlite3.connect(index_dir / current_generation(index_dir) / CATALOG_FILE)
    with db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'embedder'", (json.dumps(str(tmp_path / "evil-model")),))
    db.close()

    def must_not_load(name=None, progress=None):
        raise AssertionError(f"loaded {name}")

    monkeypatch.setattr(rag.retrieval, "load_embedder", must_not_load)
    monkeypatch.setattr(ingest.embedding, "load_embedder", must_not_load)
    with pytest.raises(ModelLoadError, match="does not load a model path that an index's own files name"):
        Retriever(index_dir).search("soup")
    for args in (("search", "soup"), ("index", docs)):
        result = run(*args, "--index-dir", index_dir)
        assert result.exit_code == 1 and result.output.count("\n") == 1 and "--embedder" in result.output


# --- low: size cap, terminal escapes, status, one-line errors -------------------------------------------------------


def test_low_file_size_cap_with_a_flag_to_raise_it(docs, tmp_path, fake_models):
    write(docs, "public/big.txt", "word " * 300_000)  # 1.5 MB
    report = index_folder(docs, tmp_path / "idx", HashEmbedder(), max_file_bytes=1_000_000)
    assert reasons(report)["public/big.txt"].startswith("file is 1.5 MB, over the 1.0 MB limit per file; raise it")
    result = run("index", docs, "--index-dir", tmp_path / "idx2", "--max-file-size", "2", "--json")
    assert result.exit_code == 0 and "public/big.txt" not in result.stdout


def test_low_control_characters_never_reach_the_terminal(tmp_path, fake_models):
    folder = tmp_path / "docs"
    write(folder, "evil\x1b[2Jname.txt", "Soup \x1b[31mred\x1b]0;title\x07 and soup\rover. " + "Lentil soup. " * 20)
    assert run("index", folder, "--index-dir", tmp_path / "idx").exit_code == 0
    result = run("search", "soup", "--index-dir", tmp_path / "idx")
    assert result.exit_code == 0 and "\x1b" not in result.output and "\x07" not in result.output
    assert "evil\\x1b[2Jname.txt" in result.output and "\\x1b[31mred" in result.output
    as_json = json.loads(run("search", "soup", "--index-dir", tmp_path / "idx", "--json").stdout)
    assert as_json["results"][0]["source"] == "evil\x1b[2Jname.txt"  # JSON carries the exact name, escaped by JSON


def test_low_status_without_a_user_hides_the_policy(docs, tmp_path, fake_models):
    run("index", docs, "--index-dir", tmp_path / "idx")
    public = json.loads(run("status", "--index-dir", tmp_path / "idx", "--json").stdout)
    assert public["acl"] is True and public["documents"] == 2
    assert not {"groups", "rules", "default"} & set(public)
    text = run("status", "--index-dir", tmp_path / "idx").output
    assert "alice" not in text and "finance/**" not in text
    bob = json.loads(run("status", "--index-dir", tmp_path / "idx", "--user", "bob", "--json").stdout)
    assert bob["user"] == {"name": "bob", "groups": ["finance"], "documents": 2}
    owner = json.loads(run("status", "--index-dir", tmp_path / "idx", "--policy", "--json").stdout)
    assert owner["groups"] == {"finance": ["alice", "bob"]} and owner["rules"][2]["rule"] == "rule 3 (finance/**)"


def test_low_damaged_catalog_page_is_one_line(docs, tmp_path, fake_models):
    for n in range(30):
        write(docs, f"public/page{n}.md", f"Page {n} about soup and the canteen. " * 40)
    run("index", docs, "--index-dir", tmp_path / "idx")
    catalog = tmp_path / "idx" / current_generation(tmp_path / "idx") / CATALOG_FILE
    data = bytearray(catalog.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data) - page, page):  # every page but the header and the last: b-tree garbage
        data[offset : offset + 64] = b"\xff" * 64
    catalog.write_bytes(bytes(data))
    for args in (("search", "soup"), ("status",)):
        result = run(*args, "--index-dir", tmp_path / "idx")
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.output.count("\n") == 1 and "--rebuild" in result.output


def test_low_full_disk_during_the_faiss_write_is_one_line(tmp_path):
    from ingest.vectors import VectorIndex

    vectors = VectorIndex.create(64)
    vectors.add(__import__("numpy").arange(2000), HashEmbedder().embed([f"w{n}" for n in range(2000)]))
    with pytest.raises(IndexWriteError, match=r"cannot write the vector file /dev/full \(No space left on device\)"):
        vectors.save(Path("/dev/full"))


def test_low_query_with_invalid_utf8_is_one_line(docs, tmp_path, fake_models):
    run("index", docs, "--index-dir", tmp_path / "idx")
    result = run("search", "caf\udce9", "--index-dir", tmp_path / "idx")
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "not valid UTF-8" in result.output


def test_low_full_disk_and_damage_messages_name_the_cause():
    import errno

    from rag.terminal import one_line_error

    assert one_line_error(sqlite3.OperationalError("database or disk is full")).startswith("disk full (database or")
    assert "rebuild it" in one_line_error(sqlite3.DatabaseError("database disk image is malformed"))
    full = one_line_error(OSError(errno.ENOSPC, "No space left on device", "/idx/gen-2.tmp/catalog.sqlite"))
    assert full == "disk full (No space left on device: /idx/gen-2.tmp/catalog.sqlite); free some space and run again"
