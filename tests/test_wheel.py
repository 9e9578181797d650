"""The wheel works on its own: built from a copy of the checkout, installed into a fresh venv, and run from a folder
outside the checkout, `rag demo` finds its corpus and `rag eval` its control questions as package data."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from fakes import run_checked

REPO = Path(__file__).resolve().parents[1]
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".*cache")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the freshly built wheel installed, and this interpreter's packages for its dependencies."""
    root = tmp_path_factory.mktemp("wheel")
    source = Path(shutil.copytree(REPO, root / "source", ignore=_NOT_SOURCE))  # the build writes into its tree
    pip = (sys.executable, "-m", "pip")
    run_checked(*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", root / "dist", ".", cwd=source)
    [wheel] = (root / "dist").glob("docrag-*.whl")
    venv = root / "venv"
    run_checked(sys.executable, "-m", "venv", "--system-site-packages", venv, cwd=root)
    # The dependencies: --system-site-packages reaches the base interpreter's, but the tests may run in a venv (as
    # .ci/run does), so its site-packages go on the path too, after the venv's own. Lines of a .pth file are only
    # added to sys.path (the .pth files inside them are not run), so the checkout's editable install stays out.
    outer = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    [site_packages] = (venv / "lib").glob("python3*/site-packages")
    (site_packages / "outer-dependencies.pth").write_text("\n".join(outer) + "\n")
    run_checked(venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=root)
    return venv


@pytest.mark.slow
def test_the_wheel_ships_its_data_and_runs_the_demo_outside_the_checkout(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    python = installed / "bin" / "python"
    where = run_checked(
        python,
        "-c",
        "import corpora, eval, rag; from pathlib import Path; print(rag.__file__); "
        "print(corpora.bundled_corpus()); print(Path(eval.__file__).with_name('control.jsonl'))",
        cwd=elsewhere,
    ).stdout.split()
    package, corpus, control = map(Path, where)
    for path in (package, corpus, control):
        assert installed in path.parents and REPO not in path.parents, path
    assert (corpus / ".rag-acl.toml").is_file() and (corpus.parent / "acme-demo.json").is_file()
    assert len(control.read_text().splitlines()) > 0

    index_dir = tmp_path / "demo-index"
    rag = installed / "bin" / "rag"
    # The limit is against a hang, not a speed check: on 2 cores shared at a load of 20 the demo took over 10 min.
    demo = run_checked(rag, "demo", "--index-dir", index_dir, "--json", cwd=elsewhere, timeout=1800)
    transcript = json.loads(demo.stdout)
    script = json.loads((corpus.parent / "acme-demo.json").read_text())
    assert transcript["index"]["documents"] == 29 and not transcript["index"]["skipped"]
    assert len(transcript["answers"]) == len(script["users"]) * len(script["questions"])
    assert any(not a["abstained"] and a["citations"] for a in transcript["answers"])

    status = run_checked(rag, "status", "--index-dir", index_dir, "--json", cwd=elsewhere)
    status = json.loads(status.stdout)
    assert (status["documents"], status["acl"]) == (29, True)
