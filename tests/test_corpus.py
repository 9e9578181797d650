"""The bundled demo corpus is consistent: sources exist, aliases occur, splits don't leak, the policy has views."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

from corpora import bundled_corpus
from ingest.loaders import discover, load_file
from ingest.policy import Policy
from rag.permissions import query_principals, readable
from rag.text import contains_answer, normalise

CORPUS = bundled_corpus("acme")
QA = CORPUS.parent / "acme-qa.jsonl"


@pytest.fixture(scope="module")
def qa():
    return [json.loads(line) for line in QA.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def texts():
    sources, skipped = discover(CORPUS)
    assert skipped == []
    return {s: load_file(CORPUS, s).text for s in sources}


def test_corpus_shape(texts):
    assert 25 <= len(texts) <= 40
    suffixes = {Path(s).suffix for s in texts}
    assert {".md", ".txt", ".html", ".pdf"} <= suffixes
    assert sum(s.endswith(".pdf") for s in texts) >= 2
    assert len({s.split("/")[0] for s in texts}) >= 5
    short = {s: n for s, t in texts.items() if (n := len(t.split())) < 150 or n > 1200}
    assert not short, f"documents outside 150-1200 words: {short}"


def test_pdfs_are_regenerated_byte_for_byte(tmp_path):
    pytest.importorskip("fpdf")
    spec = importlib.util.spec_from_file_location("make_pdfs", CORPUS.parent / "make_pdfs.py")
    make_pdfs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_pdfs)
    make_pdfs.results_pdf(tmp_path / "results.pdf")
    make_pdfs.price_list_pdf(tmp_path / "prices.pdf")
    assert (tmp_path / "results.pdf").read_bytes() == (CORPUS / "finance/q1-2031-results.pdf").read_bytes()
    assert (tmp_path / "prices.pdf").read_bytes() == (CORPUS / "sales/price-list-2031.pdf").read_bytes()


def test_html_script_and_style_are_not_extracted(texts):
    html = " ".join(t for s, t in texts.items() if s.endswith(".html"))
    assert "KeyLatch" in html
    assert "SCRIPTWORD" not in html and "styleword" not in html


def test_multi_page_pdf_keeps_pages():
    doc = load_file(CORPUS, "finance/q1-2031-results.pdf")
    assert [page for _, page in doc.pages] == [1, 2, 3]
    assert "212 people" in doc.text[doc.pages[2][0] :]


def test_split_sizes(qa):
    by_split = {s: [q for q in qa if q.get("split", "test") == s] for s in ("test", "train", "dev")}
    test = by_split["test"]
    assert (
        len(test) >= 120 and len(by_split["train"]) >= 120 and 15 <= len(by_split["dev"]) <= 100
    )  # dev: 15 facts + 25 unanswerable, for calibrating abstention
    assert sum(not q["answers"] for q in test) >= 20
    assert sum(q["restricted"] for q in test) >= 15
    assert len({q["id"] for q in qa}) == len(qa)


def test_sources_exist_and_aliases_occur(qa, texts):
    for q in qa:
        if not q["answers"]:
            assert q["source"] is None, q["id"]
            continue
        assert q["source"] in texts, q["id"]
        assert any(contains_answer(texts[q["source"]], a) for a in q["answers"]), q["id"]


def test_aliases_are_not_generic(qa):
    # The scorer accepts an answer that contains a normalised alias: "4%" normalises to "4" and would match anything.
    for q in qa:
        for alias in q["answers"]:
            assert len(normalise(alias)) >= 2 and normalise(alias) not in {"yes", "no", "true", "false"}, q["id"]


def test_restricted_flag_matches_the_policy(qa):
    policy = Policy.load(CORPUS / ".rag-acl.toml")
    for q in qa:
        if q["source"]:
            assert q["restricted"] == (not readable(policy.principals_for(q["source"]), frozenset({"*"}))), q["id"]


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", normalise(text)))


def test_no_test_question_reappears_in_train(qa):
    test = [q for q in qa if q["split"] == "test"]
    train = [q for q in qa if q["split"] in ("train", "dev")]
    train_norm = {normalise(q["question"]) for q in train}
    for q in test:
        assert normalise(q["question"]) not in train_norm, q["id"]
        # A question about the same fact must be worded differently, not just re-punctuated.
        same_fact = (o for o in train if q["answers"] and o["answers"] == q["answers"] and o["source"] == q["source"])
        for other in same_fact:
            a, b = _words(q["question"]), _words(other["question"])
            assert len(a & b) / len(a | b) < 0.6, (q["question"], other["question"])


def test_policy_gives_at_least_four_views(texts):
    policy = Policy.load(CORPUS / ".rag-acl.toml")
    assert len(policy.groups) >= 4
    users = sorted({u for members in policy.groups.values() for u in members} | {"carol"})
    assert len(users) >= 6
    views = set()
    for user in [None, *users]:
        principals = query_principals(policy.groups, user)
        views.add(frozenset(s for s in texts if readable(policy.principals_for(s), principals)))
    assert len(views) >= 4
    hidden = [s for s in texts if not policy.principals_for(s)]
    assert hidden == ["archive/old-strategy.txt"]
