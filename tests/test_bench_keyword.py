"""The keyword benchmark runs at a small size, and its pooled ranking is FTS5's on a single readable class."""

import json

import pytest

from eval.bench_keyword import main, run


def test_pooled_bm25_ranks_one_class_as_fts5_does():
    figures = run(readable_chunks=300, restricted_chunks=50, runs=1)
    assert figures["pooled_ranking_equals_fts5"] is True
    assert figures["pooled_bm25_ms"] > 0 and figures["side_channel_ratio"] > 0


def test_bad_sizes_are_refused_by_name(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--runs", "0"])
    assert exit_.value.code == 2
    assert "--runs" in capsys.readouterr().err


def test_json_output(capsys):
    assert main(["--readable", "40", "--restricted", "10", "--runs", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["readable_chunks"] == 40
