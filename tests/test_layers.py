"""The layering, checked on the source: ``common`` (what every layer shares) imports none of ours, ``ingest`` knows
nothing of queries, ``rag`` builds on ``ingest``, ``eval`` on both, and the CLI is the composition root above all three.

Every import is read with ``ast``, the lazy ones inside functions included, so nothing is imported to check it. What
breaks the rules today is listed below as an explicit exception with its reason. Each exception must still occur (a
stale one fails too), so the lists only shrink.
"""

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("common", "ingest", "rag", "eval")  # each may import the ones before it, never the ones after
# Package data, and its one helper (corpora.bundled_corpus, which imports nothing of ours): any layer may import it.
DATA_PACKAGES = ("corpora",)

# (importing module, imported module): imports against the layering that are allowed, and why.
ALLOWED_UPWARD = {
    # rag/cli.py is the composition root (see DESIGN.md): it may import eval, lazily, inside the command.
    # TODO(issue 19): move the CLI above the three layers (e.g. a `cli` package) and drop these two.
    ("rag.cli", "eval.run"): "rag eval runs the evaluator",
    ("rag.cli", "eval.bench"): "rag bench runs the benchmarks",
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


def upward_imports() -> dict[tuple[str, str], Import]:
    found = {}
    for imp in all_imports():
        own, other = layer_of(imp.importer), layer_of(imp.module)
        if other in LAYERS and LAYERS.index(other) > LAYERS.index(own):
            found[(imp.importer, imp.module)] = imp
    return found


def test_no_layer_imports_a_layer_above_it_except_the_listed_ones():
    unexpected = {key: imp for key, imp in upward_imports().items() if key not in ALLOWED_UPWARD}
    assert not unexpected, "imports against the layering (ingest -> rag -> eval): " + ", ".join(
        f"{imp.importer} (line {imp.line}) imports {imp.module}" for imp in unexpected.values()
    )


def test_the_allowed_upward_imports_are_lazy_and_still_needed():
    found = upward_imports()
    stale = set(ALLOWED_UPWARD) - set(found)
    assert not stale, f"no longer imported, remove from ALLOWED_UPWARD: {sorted(stale)}"
    eager = [imp for key, imp in found.items() if key in ALLOWED_UPWARD and not imp.lazy]
    assert not eager, f"the composition root imports eval lazily only: {eager}"


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
