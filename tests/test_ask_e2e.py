"""`rag ask` end to end on the real bundled models: index the demo corpus, ask, check the answer and its citation,
and check that a user who may not read the answer's document never gets it."""

import json

import pytest
from click.testing import CliRunner

from corpora import bundled_corpus
from rag.cli import cli


def ask(index_dir, question, *extra):
    result = CliRunner().invoke(cli, ["ask", question, "--index-dir", str(index_dir), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_index_then_ask_gives_cited_answers_only_to_permitted_users(tmp_path):
    index_dir = tmp_path / "idx"
    indexed = CliRunner().invoke(cli, ["index", str(bundled_corpus()), "--index-dir", str(index_dir), "--json"])
    assert indexed.exit_code == 0, indexed.output

    public = ask(index_dir, "What is the per diem for a trip to Oslo?")
    assert not public["abstained"] and "780" in public["answer"]
    assert public["citations"][0]["source"] == "handbook/travel-policy.md" and public["citations"][0]["chunk_id"]
    assert set(public["timings"]) >= {"retrieval", "generation", "total"}

    # The acquisition price sits only in a finance document: alice (CFO) may read it, anonymous and hana may not.
    # The shipped reader settings answer it (with the span model's agreement; docs/reader.md).
    question = "For how much will HTI acquire Marelius Sensors?"
    permitted = ask(index_dir, question, "--user", "alice")
    assert "64 million" in permitted["answer"]
    assert permitted["citations"][0]["source"] == "finance/q1-2031-results.pdf"
    for user in ([], ["--user", "hana"]):
        denied = ask(index_dir, question, *user)
        assert "64" not in denied["answer"]
        assert all(not c["source"].startswith("finance/") for c in denied["citations"])
