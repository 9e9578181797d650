"""The ``rag`` command line: the composition root, and the only module that imports ingest, rag and eval.

Domain errors (``ingest.errors.RagError``) become one line on stderr with exit 1 (2 for usage errors); a
traceback only with ``--debug``. Heavy libraries are imported inside the commands so ``rag --help`` is instant.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from ingest.errors import RagError, UsageError
from ingest.paths import default_index_dir

INDEX_DIR_HELP = "Index directory. Default: $RAG_INDEX_DIR, else ./.rag"


class _Group(click.Group):
    """Turns domain errors into one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except RagError as err:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {err}", err=True)
            ctx.exit(2 if isinstance(err, UsageError) else 1)
        except KeyboardInterrupt:
            click.echo("Interrupted; the previous index is intact.", err=True)
            ctx.exit(130)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _index_dir_option(func):
    return click.option(
        "--index-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=INDEX_DIR_HELP,
    )(func)


def _retrieval_option(func):
    return click.option(
        "--retrieval",
        type=click.Choice(["hybrid", "dense"]),
        default="hybrid",
        show_default=True,
        help="hybrid fuses keyword (BM25) and embedding rankings: exact names and codes are found too; dense uses embeddings only.",
    )(func)


def _resolve_index_dir(index_dir: Path | None) -> Path:
    return index_dir if index_dir is not None else default_index_dir()


def _emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="docrag")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Index a document folder, ask it questions with citations and per-user permissions, and measure RAG
    against LoRA fine-tuning.

    \b
    Quick start:
      rag demo                               # index the bundled corpus and ask it questions as two users
      rag index ~/docs                       # build or update the index in ./.rag
      rag search "travel per diem" --user alice
      rag ask "What is the per diem for Oslo?" --user alice
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@cli.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_index_dir_option
@click.option(
    "--acl",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Permission policy (TOML). Default: PATH/.rag-acl.toml if present; without one, everything is readable by everyone.",
)
@click.option(
    "--embedder", default=None, help="sentence-transformers model name or path. Default: the bundled all-MiniLM-L6-v2."
)
@click.option(
    "--rebuild",
    is_flag=True,
    help="Ignore the existing index and build a new one from scratch (it replaces the old one atomically).",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(16, 8192),
    default=None,
    help="Tokens per chunk (default 200; fixed once an index exists unless --rebuild).",
)
@click.option(
    "--overlap", type=click.IntRange(0, 4096), default=None, help="Tokens shared by neighbouring chunks (default 30)."
)
@click.option(
    "--vector-index",
    "vector_kind",
    type=click.Choice(["flat", "hnsw", "ivf"]),
    default="flat",
    show_default=True,
    help="FAISS index type; hnsw/ivf are approximate, for very large folders.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def index(path, index_dir, acl, embedder, rebuild, chunk_size, overlap, vector_kind, as_json):
    """Index the documents in PATH (incremental: adds, updates and deletes; embeds only what changed)."""
    from ingest.embedding import load_embedder
    from ingest.store import current_generation, open_index
    from ingest.sync import index_folder

    index_dir = _resolve_index_dir(index_dir)
    if acl is not None and not acl.is_file():
        raise UsageError(f"--acl {acl}: no such file")
    if embedder is None and not rebuild and current_generation(index_dir):
        live = open_index(index_dir, check=False)
        embedder = live.meta("embedder")  # keep the index's own embedder unless told otherwise
        live.close()
    model = load_embedder(embedder)
    report = index_folder(
        path,
        index_dir,
        model,
        acl=acl,
        rebuild=rebuild,
        chunk_size=chunk_size,
        overlap=overlap,
        vector_kind=vector_kind,
    )
    if as_json:
        _emit_json(report.to_json())
        return
    click.echo(
        f"Indexed {path} into {index_dir}: {report.added} added, {report.updated} updated, {report.deleted} deleted, "
        f"{report.unchanged} unchanged ({report.documents} documents, {report.chunks} chunks, "
        f"{report.chunks_embedded} embedded, {report.seconds:.1f} s)."
    )
    if report.permissions_changed:
        click.echo(f"Permissions changed for {_count(report.permissions_changed, 'document')} (nothing re-embedded).")
    for skipped in report.skipped:
        click.echo(f"  skipped {skipped.path}: {skipped.reason}", err=True)


@cli.command()
@click.argument("query")
@_index_dir_option
@click.option(
    "--user",
    default=None,
    help="Search as this user (their groups apply). Default: anonymous, who sees only documents open to everyone.",
)
@click.option("-k", "k", type=click.IntRange(1, 1000), default=5, show_default=True, help="Number of results.")
@click.option("--embedder", default=None, help="Query embedder; must match the one that built the index (the default).")
@_retrieval_option
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
def search(query, index_dir, user, k, embedder, retrieval, as_json):
    """Find the chunks most relevant to QUERY that the user may read."""
    from .retrieval import Retriever

    retriever = Retriever(_resolve_index_dir(index_dir), embedder=embedder, mode=retrieval)
    results = retriever.search(query, k=k, user=user)
    if as_json:
        _emit_json({"results": [r.to_json() for r in results]})
        return
    if not results:
        click.echo("No results.")
    for r in results:
        where = f"{r.source}" + (f" p.{r.page}" if r.page else "")
        snippet = " ".join(r.text.split())
        click.echo(f"{r.rank:>2}. {r.score:.3f}  {where}  [chunk {r.chunk_id}]")
        click.echo(f"    {snippet[:240]}{'...' if len(snippet) > 240 else ''}")


@cli.command()
@_index_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print status as JSON.")
def status(index_dir, as_json):
    """Show what an index holds: documents, chunks, embedder, and the permission policy in force."""
    from ingest.store import open_index

    index_dir = _resolve_index_dir(index_dir)
    live = open_index(index_dir)
    try:
        policy = live.meta("policy", {}) or {}
        data = {
            "documents": live.catalog.document_count(),
            "chunks": live.catalog.chunk_count(),
            "embedder": live.meta("embedder"),
            "dimension": live.meta("dimension"),
            "acl": not policy.get("open", True),
            "policy": policy.get("source"),
            "default": policy.get("default"),
            "rules": [{"rule": rule, "documents": n} for rule, n in policy.get("coverage", [])],
            "groups": live.meta("groups", {}),
            "folder": live.meta("folder"),
            "index_dir": str(index_dir),
            "generation": live.generation,
            "indexed_at": live.meta("indexed_at"),
            "chunk_size": live.meta("chunk_size"),
            "overlap": live.meta("overlap"),
            "vector_index": live.meta("vector_kind"),
        }
    finally:
        live.close()
    if as_json:
        _emit_json(data)
        return
    click.echo(f"Index {index_dir} ({data['generation']}, indexed {data['indexed_at']})")
    click.echo(f"  folder:    {data['folder']}")
    click.echo(f"  documents: {data['documents']}   chunks: {data['chunks']}")
    click.echo(f"  embedder:  {data['embedder']} ({data['dimension']} dims, {data['vector_index']} index)")
    if data["acl"]:
        click.echo(f"  policy:    {data['policy']} (default {data['default']})")
        for rule in data["rules"]:
            click.echo(f"    {rule['rule']}: {_count(rule['documents'], 'document')}")
    else:
        click.echo("  policy:    none; every document is readable by everyone")


def _print_answer(answer, streamed: bool) -> None:
    if answer.abstained:
        if not streamed:
            click.echo("I don't know.")
        click.echo(click.style(f"  ({answer.reason})", dim=True) if answer.reason else "", nl=bool(answer.reason))
        return
    if not streamed:
        click.echo(answer.answer)
    if answer.citations:
        click.echo("Sources:")
        for c in answer.citations:
            click.echo(f"  [{c.n}] {c.source} (chunk {c.chunk_id}, score {c.score:.3f})")


@cli.command()
@click.argument("question")
@_index_dir_option
@click.option(
    "--user", default=None, help="Ask as this user: only documents they may read are used. Default: anonymous."
)
@click.option(
    "-k", "k", type=click.IntRange(1, 50), default=None, help="Passages to retrieve (default: the reader's own, 4)."
)
@click.option(
    "--generator",
    default=None,
    help="Hugging Face causal LM name (already cached) or local path. Default: the bundled Gemma 3 270M.",
)
@click.option("--embedder", default=None, help="Query embedder; must match the index's (the default).")
@_retrieval_option
@click.option(
    "--max-new-tokens", type=click.IntRange(1, 2048), default=48, show_default=True, help="Limit on generated tokens."
)
@click.option("--json", "as_json", is_flag=True, help="Print the answer, citations and timings as JSON.")
def ask(question, index_dir, user, k, generator, embedder, retrieval, max_new_tokens, as_json):
    """Answer QUESTION from the indexed documents the user may read, with citations, or say "I don't know"."""
    from .answer import answer_question
    from .generation import load_generator
    from .retrieval import Retriever

    retriever = Retriever(_resolve_index_dir(index_dir), embedder=embedder, mode=retrieval)
    model = load_generator(generator)
    stream = not as_json and sys.stdout.isatty()
    kwargs = {"user": user, "max_new_tokens": max_new_tokens}
    if k is not None:
        kwargs["k"] = k
    if stream:
        kwargs["on_token"] = lambda token: click.echo(token, nl=False)
    answer = answer_question(retriever, model, question, **kwargs)
    if as_json:
        _emit_json(answer.to_json())
        return
    if stream:
        click.echo("I don't know." if answer.abstained else "")
    _print_answer(answer, streamed=stream)


@cli.command(name="eval")
@click.option(
    "--corpus",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder of documents. Leave out when --qa is a SQuAD JSON file: its paragraphs become the corpus.",
)
@click.option(
    "--qa",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="QA set: JSON Lines (id, question, answers, source, split) or a SQuAD v1.1/v2.0 JSON file.",
)
@click.option(
    "--acl",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Permission policy for the privacy probe. Default: the corpus's .rag-acl.toml if present.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("eval-out"),
    show_default=True,
    help="Where report.json, report.md and the charts go.",
)
@click.option("--quick", is_flag=True, help="A small, fast run: a subset of questions and fewer training epochs.")
@click.option(
    "--systems",
    default=None,
    help="Comma-separated subset of: closed_book, lora (LoRA on every linear layer), full_ft (all weights), rag, "
    "rag_lora, rag_full_ft, rag_raft (RAG with a reading adapter trained on questions generated from the documents), "
    "long_context (the user's permitted documents in the prompt), oracle. Default: all.",
)
@click.option(
    "--probes",
    default="privacy,freshness,forgetting",
    show_default=True,
    help="Comma-separated probes to run, or 'none'. They probe the fine-tuned variants that --systems trains.",
)
@click.option(
    "--generator",
    default=None,
    help="Base model for every system: any Hugging Face causal LM folder on disk (the GPU is used when present). "
    "Default: the bundled Gemma 3 270M.",
)
@click.option(
    "--tune", is_flag=True, help="Choose LoRA's rank and learning rate on the QA set's dev split first (slower)."
)
@click.option("--progress", is_flag=True, help="Report each stage on stderr (default: only on a terminal).")
@click.option("--embedder", default=None, help="Embedder for the retrieval systems. Default: the bundled MiniLM.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling, training and bootstrap.")
@click.option(
    "--max-questions", type=click.IntRange(1, None), default=None, help="Score at most this many test questions."
)
@click.option("--json", "as_json", is_flag=True, help="Print report.json to stdout as well.")
def eval_command(
    corpus, qa, acl, out, quick, systems, probes, generator, tune, progress, embedder, seed, max_questions, as_json
):
    """Compare closed-book, fine-tuning (LoRA, full), RAG, RAG + fine-tuning, a RAFT reading adapter and long context
    on one QA set: accuracy, hallucination, abstention, what each fine-tune learnt, cost, privacy leaks, freshness
    and forgetting."""
    from eval.run import EvalOptions, run_eval

    options = EvalOptions(
        corpus=corpus,
        qa=qa,
        acl=acl,
        out=out,
        quick=quick,
        systems=[s.strip() for s in systems.split(",") if s.strip()] if systems else None,
        probes=[] if probes.strip() == "none" else [p.strip() for p in probes.split(",") if p.strip()],
        generator=generator,
        embedder=embedder,
        seed=seed,
        max_questions=max_questions,
        tune=tune,
        progress=progress or sys.stderr.isatty(),
    )
    report = run_eval(options)
    if as_json:
        _emit_json(report)
    else:
        click.echo(f"Wrote {out / 'report.md'}, {out / 'report.json'} and charts.")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args):
    """Run the benchmarks (ingest vs LangChain/LlamaIndex, embedding roofline, search, generation).

    Arguments are passed to `python -m eval.bench`; see `rag bench --help-bench`."""
    from eval.bench import main as bench_main

    argv = ["--help"] if list(args) == ["--help-bench"] else list(args)
    raise SystemExit(bench_main(argv))


@cli.command()
@_index_dir_option
@click.option("--generator", default=None, help="Generator for the answers. Default: the bundled Gemma 3 270M.")
@click.option("--json", "as_json", is_flag=True, help="Print the transcript as JSON.")
def demo(index_dir, generator, as_json):
    """Index the bundled demo corpus into a fresh index, then ask it the same questions as different users."""
    import tempfile

    from ingest.embedding import load_embedder
    from ingest.sync import index_folder

    from .answer import answer_question
    from .demo import load_script, run_demo
    from .generation import load_generator
    from .retrieval import Retriever

    script = load_script()
    echo = (lambda line: None) if as_json else click.echo
    with tempfile.TemporaryDirectory(prefix="rag-demo-") as scratch:
        target = index_dir or Path(scratch) / "index"
        echo(f"Indexing the demo corpus {script.corpus} into {target} ...")
        report = index_folder(script.corpus, target, load_embedder(), rebuild=True)
        echo(
            f"Indexed {report.documents} documents ({report.chunks} chunks) in {report.seconds:.1f} s; "
            f"policy: {script.corpus / '.rag-acl.toml'}."
        )
        echo("Loading the generator ...")
        model = load_generator(generator)
        users = ", ".join(u or "anonymous" for u in script.users)
        echo(f"Asking {len(script.questions)} questions as {users}: each sees only the documents they may read.")
        transcript = run_demo(script, target, Retriever, model, answer_question, echo)
    if as_json:
        _emit_json({"index": report.to_json(), "answers": transcript})
    else:
        echo("")
        echo('Try it yourself: rag index corpora/acme && rag ask "..." --user alice   (see corpora/README.md)')


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli(prog_name="rag")


if __name__ == "__main__":
    main()
    sys.exit(0)
