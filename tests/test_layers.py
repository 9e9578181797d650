"""The layering of DESIGN.md, checked on the source: ``ingest`` knows nothing of queries, ``rag`` builds on
``ingest``, ``eval`` on both. The top level is fixed to those three packages (with ``tests``, ``corpora`` and
``docs``), so two places that sit outside the chain are named here instead of being packages of their own:

- the shared module (``SHARED_MODULE``, ``ingest/common.py``): what every layer shares (the errors more than one
  layer raises, the cache and index paths, the device and dtype choice). It imports nothing of ours, and each of its
  names is used by two layers or more;
- the composition root (``COMPOSITION_ROOT``, ``rag/cli.py``): the click CLI, above all three; the only module that
  may import ``eval`` from below it, and only lazily (inside functions), so that ``rag --help`` stays instant.

Every import is read with ``ast``, the lazy ones inside functions included, so nothing is imported to check it.
There are no other exceptions: an import against the layering fails.
"""

import ast
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each may import the ones before it, never the ones after.
LAYERS = ("ingest", "rag", "eval")
# Package data, and its one helper (corpora.bundled_corpus, which imports nothing of ours): any layer may import it.
DATA_PACKAGES = ("corpora",)
# What all layers share, in the lowest layer: every layer may import it, and it imports nothing of ours.
SHARED_MODULE = "ingest.common"
# The modules above all three layers, and why: each may import eval, lazily only, and no module of ours imports them.
COMPOSITION_ROOT = {
    "rag.cli": "the click CLI (DESIGN.md: the composition root above all three); rag eval and rag bench run eval",
}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name, e.g. "rag.cli"
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


def is_lazy_root_import_of_eval(imp: Import) -> bool:
    """The one import allowed upward: the composition root importing eval inside a function."""
    return imp.importer in COMPOSITION_ROOT and layer_of(imp.module) == "eval" and imp.lazy


def upward_imports() -> dict[tuple[str, str], Import]:
    found = {}
    for imp in all_imports():
        own, other = layer_of(imp.importer), layer_of(imp.module)
        if other in LAYERS and LAYERS.index(other) > LAYERS.index(own) and not is_lazy_root_import_of_eval(imp):
            found[(imp.importer, imp.module)] = imp
    return found


def test_no_layer_imports_a_layer_above_it():
    """Only the composition root reaches above its layer, and only to eval, lazily; an eager import fails here too."""
    found = upward_imports()
    assert not found, "imports against the layering (ingest -> rag -> eval): " + ", ".join(
        f"{imp.importer} (line {imp.line}) imports {imp.module}{'' if imp.lazy else ' at module level'}"
        for imp in found.values()
    )


@pytest.mark.parametrize("root", sorted(COMPOSITION_ROOT))
def test_the_composition_root_imports_eval_lazily(root):
    """``rag --help`` stays instant: the evaluator and the benchmarks load inside their commands only. A root that
    no longer imports eval is a stale entry: remove it from COMPOSITION_ROOT."""
    assert (ROOT / Path(*root.split(".")).with_suffix(".py")).is_file(), f"{root} is gone: update COMPOSITION_ROOT"
    of_eval = [imp for imp in all_imports() if imp.importer == root and layer_of(imp.module) == "eval"]
    assert of_eval, f"{root} no longer imports eval: remove it from COMPOSITION_ROOT"
    eager = [f"{imp.importer} (line {imp.line}) imports {imp.module}" for imp in of_eval if not imp.lazy]
    assert not eager, f"eval imported at module level: {eager}"


def test_nothing_imports_the_composition_root():
    """The composition root is the top: a module of ours that imported it would sit above eval through it."""
    found = [
        f"{imp.importer} (line {imp.line}) imports {root}"
        for imp in all_imports()
        for root in imported_modules(imp) & set(COMPOSITION_ROOT)
        if imp.importer != root
    ]
    assert not found, f"the composition root is imported: {found}"


def test_the_shared_module_imports_nothing_of_ours():
    """``ingest.common`` is below everything, ``ingest`` included: it imports no module of ours, and at module level
    only the standard library (torch loads inside the device functions)."""
    path = ROOT / Path(*SHARED_MODULE.split(".")).with_suffix(".py")
    found = imports_of(path)
    ours = [f"line {imp.line}: {imp.module}" for imp in found if layer_of(imp.module) is not None]
    assert not ours, f"{SHARED_MODULE} imports modules of ours: {ours}"
    heavy = [
        f"line {imp.line}: {imp.module}"
        for imp in found
        if not imp.lazy and imp.module.split(".")[0] not in sys.stdlib_module_names
    ]
    assert not heavy, f"{SHARED_MODULE} imports a library at module level: {heavy}"


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
    error all layers share goes to the shared module, ``ingest.common``)."""
    used_in_ingest = set().union(*(used_names(path) for path in source_files("ingest")))
    misplaced = {
        f"{imp.module}.{name}"
        for imp in all_imports()
        if layer_of(imp.importer) != "ingest" and imp.module == "ingest.errors"
        for name in imp.names
        if name not in used_in_ingest
    }
    assert not misplaced, f"only other layers use these; move them to their owner: {sorted(misplaced)}"


def public_names(module: str) -> set[str]:
    """The functions, classes and constants a module defines at its top level, those without a leading underscore."""
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {name for name in names if not name.startswith("_")}


def user_of(path: Path) -> str:
    """Who uses a name in this file: its layer, or the composition root, which DESIGN.md puts above all three."""
    return "composition root" if module_name(path) in COMPOSITION_ROOT else layer_of(module_name(path))


def users_of(name: str) -> set[str]:
    return {
        user_of(path)
        for layer in LAYERS
        for path in source_files(layer)
        if module_name(path) != SHARED_MODULE and name in used_names(path)
    }


@pytest.mark.parametrize("name", sorted(public_names(SHARED_MODULE)))
def test_the_shared_module_holds_only_what_two_layers_or_more_use(name):
    """``ingest.common`` is small by design: a name that one layer alone uses lives in that layer."""
    users = users_of(name)
    assert len(users) >= 2, f"{SHARED_MODULE}.{name} is used by {sorted(users) or 'no layer'} only: move it there"


@cache
def our_modules() -> set[str]:
    return {module_name(path) for layer in LAYERS for path in source_files(layer)}


def imported_modules(imp: Import) -> set[str]:
    """The modules of ours that an import names: ``from . import probes`` imports ``eval.probes``."""
    submodules = {f"{imp.module}.{name}" for name in imp.names} & our_modules()
    return submodules or ({imp.module} & our_modules())


def mutual_imports() -> set[tuple[str, str]]:
    edges = {(imp.importer, other) for imp in all_imports() for other in imported_modules(imp) if other != imp.importer}
    return {(a, b) for a, b in edges if (b, a) in edges and a < b}


def test_no_two_modules_import_each_other():
    """An import cycle between two modules (a lazy import inside a function included) means one of them holds what
    belongs to the other: the dependency goes one way, e.g. ``rag.answer`` -> ``rag.reader``."""
    found = mutual_imports()
    assert not found, f"modules that import each other: {sorted(found)}"
