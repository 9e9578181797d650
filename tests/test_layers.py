"""The layering, checked on the source: ``common`` (what every layer shares) imports none of ours, ``ingest`` knows
nothing of queries, ``rag`` builds on ``ingest``, ``eval`` on both, and the CLI is the composition root above all three.

Every import is read with ``ast``, the lazy ones inside functions included, so nothing is imported to check it.
There are no exceptions: an import against the layering fails.
"""

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each may import the ones before it, never the ones after: common is what all share, cli the composition root.
LAYERS = ("common", "ingest", "rag", "eval", "cli")
# Package data, and its one helper (corpora.bundled_corpus, which imports nothing of ours): any layer may import it.
DATA_PACKAGES = ("corpora",)


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name, e.g. "cli.main"
    module: str  # dotted module imported from, e.g. "eval.run"
    names: tuple[str, ...]  # the names of a from-import; () for "import x"
    line: int
    lazy: bool  # inside a function


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imports_of(path: Path) -> list[Import]:
    importer = module_name(path)
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend(Import(importer, alias.name, (), child.lineno, lazy) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                found.append(Import(importer, base, tuple(a.name for a in child.names), child.lineno, lazy))
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


@cache
def all_imports() -> list[Import]:
    return [imp for layer in LAYERS for path in source_files(layer) for imp in imports_of(path)]


def layer_of(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in LAYERS or top in DATA_PACKAGES else None


def upward_imports() -> dict[tuple[str, str], Import]:
    found = {}
    for imp in all_imports():
        own, other = layer_of(imp.importer), layer_of(imp.module)
        if other in LAYERS and LAYERS.index(other) > LAYERS.index(own):
            found[(imp.importer, imp.module)] = imp
    return found


def test_no_layer_imports_a_layer_above_it():
    found = upward_imports()
    assert not found, "imports against the layering (common -> ingest -> rag -> eval -> cli): " + ", ".join(
        f"{imp.importer} (line {imp.line}) imports {imp.module}" for imp in found.values()
    )


def test_the_cli_imports_eval_lazily():
    """``rag --help`` stays instant: the evaluator and the benchmarks load inside their commands only."""
    of_eval = [imp for imp in all_imports() if layer_of(imp.importer) == "cli" and layer_of(imp.module) == "eval"]
    assert of_eval, "the CLI runs the evaluator: expected its (lazy) imports of eval"
    eager = [f"{imp.importer} (line {imp.line}) imports {imp.module}" for imp in of_eval if not imp.lazy]
    assert not eager, f"eval imported at module level: {eager}"


@cache
def used_names(path: Path) -> set[str]:
    """Every identifier a module uses (loads, attribute names and imported names), not the ones it only defines."""
    tree = ast.parse(path.read_text(), str(path))
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.ImportFrom):
            used.update(alias.name for alias in node.names)
    return used


def test_ingest_errors_are_ingests_own():
    """A name in ``ingest.errors`` that rag or eval import but no ingest module uses belongs to another layer (an
    error all layers share goes to ``common.errors``)."""
    used_in_ingest = set().union(*(used_names(path) for path in source_files("ingest")))
    misplaced = {
        f"{imp.module}.{name}"
        for imp in all_imports()
        if layer_of(imp.importer) != "ingest" and imp.module == "ingest.errors"
        for name in imp.names
        if name not in used_in_ingest
    }
    assert not misplaced, f"only other layers use these; move them to their owner: {sorted(misplaced)}"


def defined_names(module: str) -> set[str]:
    """The functions and classes a module defines at its top level."""
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    return {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef | ast.ClassDef)}


def layers_using(name: str) -> set[str]:
    return {layer for layer in LAYERS[1:] for path in source_files(layer) if name in used_names(path)}


@pytest.mark.parametrize("module", [module_name(p) for p in source_files("common") if p.name != "__init__.py"])
def test_common_holds_only_what_two_layers_or_more_use(module):
    """``common`` is small by design: a helper that one layer alone uses lives in that layer."""
    for name in sorted(defined_names(module)):
        users = layers_using(name)
        assert len(users) >= 2, f"{module}.{name} is used by {sorted(users) or 'no layer'} only: move it there"


@cache
def our_modules() -> set[str]:
    return {module_name(path) for layer in LAYERS for path in source_files(layer)}


def imported_modules(imp: Import) -> set[str]:
    """The modules of ours that an import names: ``from . import probes`` imports ``eval.probes``."""
    submodules = {f"{imp.module}.{name}" for name in imp.names} & our_modules()
    return submodules or ({imp.module} & our_modules())


# Pairs of modules that import each other today (one of the two lazily), each with what should move. Each must still
# occur (a stale one fails too), so the list only shrinks. TODO(issue 19): break each cycle and delete its line.
KNOWN_CYCLES = {
    ("ingest.ivfpq", "ingest.vectors"): "vectors' factory builds the kinds that subclass its VectorIndex",
    ("ingest.vector_kinds", "ingest.vectors"): "the same: base class and factory share ingest/vectors.py",
    ("rag.gates", "rag.reader"): "a gate splits sentences with rag.reader.segments (the reader is being reworked)",
    ("rag.generation", "rag.llm_server"): "load_generator picks the server generator, which uses first_stop",
    ("rag.server", "rag.server_chat"): "create_app adds the chat routes, which use the server's request helpers",
}


def mutual_imports() -> set[tuple[str, str]]:
    edges = {(imp.importer, other) for imp in all_imports() for other in imported_modules(imp) if other != imp.importer}
    return {(a, b) for a, b in edges if (b, a) in edges and a < b}


def test_no_two_modules_import_each_other_except_the_listed_ones():
    """An import cycle between two modules (a lazy import inside a function included) means one of them holds what
    belongs to the other: the dependency goes one way, e.g. ``rag.answer`` -> ``rag.reader``."""
    found = mutual_imports()
    assert not found - set(KNOWN_CYCLES), f"modules that import each other: {sorted(found - set(KNOWN_CYCLES))}"
    stale = set(KNOWN_CYCLES) - found
    assert not stale, f"no longer import each other, remove from KNOWN_CYCLES: {sorted(stale)}"
