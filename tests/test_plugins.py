"""Loader plugins: the `.csv` example of docs/extending.md, pip-installed for real, is used by `rag index`."""

import json
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fakes import HashEmbedder, embedder_factory, run_checked
from ingest.plugins import plugin_loaders
from rag.cli import cli
from rag.factories import ModelFactories

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def documented_files() -> dict[str, str]:
    """The fenced code blocks of docs/extending.md whose first line names a file ("# pyproject.toml")."""
    blocks = re.findall(r"```\w*\n# (\S+)\n(.*?)```", DOC.read_text(), flags=re.S)
    return {name: body for name, body in blocks}


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """The documented example package, built and installed by pip into a folder put on sys.path."""
    package = tmp_path / "docrag-csv"
    package.mkdir()
    for name, body in documented_files().items():
        (package / name).write_text(body)
    target = tmp_path / "site"
    run_checked(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                "--target", target, package, cwd=tmp_path)  # fmt: skip
    monkeypatch.syspath_prepend(str(target))
    plugin_loaders.cache_clear()
    yield target
    plugin_loaders.cache_clear()  # later tests must not see the plugin


@pytest.mark.slow
def test_the_documented_csv_loader_is_used_by_rag_index(installed_plugin, tmp_path):
    assert set(documented_files()) == {"pyproject.toml", "docrag_csv.py"}
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "vessels.csv").write_text("name,home port,crew\nSkarv,Vardo,12\nTerna,Brennvik,8\n")
    (docs / "notes.txt").write_text("The fleet has two research vessels.")
    (docs / "sheet.ods").write_text("not a type anyone loads")
    models = ModelFactories(embedder=embedder_factory(HashEmbedder()))

    def run(*args):
        return CliRunner().invoke(cli, list(args), obj={"models": models})

    result = run("index", str(docs), "--index-dir", str(tmp_path / "idx"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["documents"] == 2
    [skipped] = report["skipped"]
    assert skipped["path"] == "sheet.ods" and ".csv" in skipped["reason"]  # the plugin's type is listed as supported
    result = run("search", "Skarv home port", "--index-dir", str(tmp_path / "idx"), "-k", "1", "--json")
    [hit] = json.loads(result.stdout)["results"]
    assert hit["source"] == "vessels.csv"
    assert "name: Skarv; home port: Vardo; crew: 12" in hit["text"]  # the loader's text, not the raw CSV


def test_without_the_plugin_csv_is_unsupported(tmp_path):
    plugin_loaders.cache_clear()
    from ingest.loaders import discover

    (tmp_path / "vessels.csv").write_text("name\nSkarv\n")
    sources, skipped = discover(tmp_path)
    assert sources == [] and "unsupported file type '.csv'" in skipped[0].reason


def test_a_plugin_that_fails_to_import_skips_only_its_files(tmp_path, monkeypatch):
    from ingest.loaders import LoadError, load_file

    dist_info = tmp_path / "site" / "broken_loader-0.1.dist-info"  # what pip writes, minus the module itself
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-loader\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[docrag.loaders]\n.CSV = no_such_module_xyz:load\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    plugin_loaders.cache_clear()
    try:
        (tmp_path / "a.csv").write_text("x\n1\n")
        (tmp_path / "b.txt").write_text("plain text")
        with pytest.raises(LoadError, match="loader plugin failed: ModuleNotFoundError"):
            load_file(tmp_path, "a.csv")
        assert load_file(tmp_path, "b.txt").text == "plain text"
    finally:
        plugin_loaders.cache_clear()
