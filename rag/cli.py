"""The ``rag`` command line: the composition root above ingest, rag and eval, and the only module that imports all
three (eval lazily, inside its commands).

Domain errors (``ingest.common.RagError``) become one line on stderr with exit 1 (2 for usage errors); a
traceback only with ``--debug``. Heavy libraries are imported inside the commands so ``rag --help`` is instant.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import click

from ingest.common import RagError, UsageError, default_index_dir

from .factories import ModelFactories
from .terminal import DISK_FULL, one_line_error, printable

INDEX_DIR_HELP = "Index directory. Default: $RAG_INDEX_DIR, else ./.rag"
DEFAULT_MAX_FILE_MB = 16.0  # ingest.discovery.DEFAULT_MAX_FILE_BYTES, without importing ingest at --help time


class _Group(click.Group):
    """Turns domain errors into one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (RagError, sqlite3.DatabaseError, OSError) as err:
            other_os_error = isinstance(err, OSError) and err.errno not in DISK_FULL
            if other_os_error or (ctx.obj and ctx.obj.get("debug")):
                raise
            click.echo(f"Error: {one_line_error(err)}", err=True)
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


def _generator_options(func):
    """``--generator`` and ``--api-key-env``, shared by the commands that answer (ask, serve, eval)."""
    func = click.option(
        "--api-key-env",
        metavar="NAME",
        default=None,
        help="Environment variable holding the LLM server's API key (with --generator URL); never the key itself.",
    )(func)
    return click.option(
        "--generator",
        default=None,
        help="Reader model: an OpenAI-compatible server's URL (http://HOST:PORT/v1 for chat, .../v1/completions for a "
        "base model, #MODEL to pick one), a local model folder or a cached Hugging Face name. Default: the bundled Gemma 3 270M.",
    )(func)


def _reader(generator: str | None, api_key_env: str | None):
    """What ``Index.open(generator=...)`` gets: an LLM server is connected to now (a wrong URL or key fails before
    any work, in one line naming it); a model name or path loads in the Index, when it is first needed."""
    from .llm_server import is_server_url

    if not is_server_url(generator) and api_key_env is None:
        return generator
    from .generation import load_generator

    return load_generator(generator, api_key_env)


def _resolve_index_dir(index_dir: Path | None) -> Path:
    return index_dir if index_dir is not None else default_index_dir()


def _models() -> ModelFactories:
    """The model factories of this invocation: the real loaders, or the fakes a test passed in ``obj``."""
    return click.get_current_context().obj["models"]


class _LazyHelpOption(click.Option):
    """An option whose help text is computed only when it is shown: its default lives in a module too heavy to
    import for every command (``rag.answer`` imports the reader and numpy)."""

    def __init__(self, *args, lazy_help, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._lazy_help = lazy_help

    def get_help_record(self, ctx: click.Context):
        self.help = self._lazy_help()
        return super().get_help_record(ctx)


def _k_help() -> str:
    from .answer import DEFAULT_K

    return f"Passages to retrieve. Default: {DEFAULT_K}."


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
      rag demo                               # index the bundled corpus and ask it questions as three users
      rag index ~/docs                       # build or update the index in ./.rag
      rag search "travel per diem" --user alice
      rag ask "What is the per diem for Oslo?" --user alice
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj.setdefault("models", ModelFactories())


@cli.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_index_dir_option
@click.option(
    "--acl",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Permission policy (TOML). Default: PATH/.rag-acl.toml if present; without one, everything is readable by everyone.",
)
@click.option(
    "--no-acl",
    is_flag=True,
    help="Index without any policy even though the index was built with one: every document becomes readable by "
    "everyone, anonymous included. Without this flag such a run is refused.",
)
@click.option(
    "--purge",
    is_flag=True,
    help="Also compact the catalog (VACUUM, keyword index merged) so deleted documents' words are gone from the files.",
)
@click.option(
    "--max-file-size",
    type=click.FloatRange(min=0.001),
    default=DEFAULT_MAX_FILE_MB,
    show_default=True,
    help="Largest file to index, in MB; larger ones are skipped with a reason.",
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
    type=click.Choice(["flat", "hnsw", "ivf", "ivfpq"]),
    default=None,
    help="FAISS index kind of a new index (default flat, exact). hnsw/ivf are approximate, for very large folders; ivfpq compresses vectors for collections that outgrow memory (millions of chunks). An existing index keeps its kind: changing it needs --rebuild.",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help='Where changed files are parsed, chunked and embedded: this process, or a Ray cluster (pip install "docrag[ray]"). The index is written here either way.',
)
@click.option(
    "--ray-address",
    default=None,
    help="Ray cluster to run on with --engine ray: its head's HOST:6379 (Ray Data does not run over Ray Client, ray://). Default: $RAY_ADDRESS, else the cluster `ray start` runs on this machine, else a new local Ray instance.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def index(
    path,
    index_dir,
    acl,
    no_acl,
    purge,
    max_file_size,
    embedder,
    rebuild,
    chunk_size,
    overlap,
    vector_kind,
    engine,
    ray_address,
    as_json,
):
    """Index the documents in PATH (incremental: adds, updates and deletes; embeds only what changed).

    Symlinks inside PATH are not followed: each file is indexed once, under its real path, with that path's
    permissions. An index built with a permission policy refuses a run without one unless --no-acl is given.
    """
    from ingest.embedding import check_recorded_embedder
    from ingest.store import current_generation, open_index
    from ingest.sync import index_folder

    index_dir = _resolve_index_dir(index_dir)
    if acl is not None and not acl.is_file():
        raise UsageError(f"--acl {acl}: no such file")
    if embedder is None and not rebuild and current_generation(index_dir):
        live = open_index(index_dir, check=False)
        embedder = check_recorded_embedder(live.meta("embedder"), index_dir)  # keep the index's own embedder
        live.close()
    if ray_address and engine != "ray":
        raise UsageError(f"--ray-address {ray_address} needs --engine ray")
    model = _models().embedder(embedder)
    if engine == "ray":
        from ingest.ray_engine import ray_engine

        engine = ray_engine(model.name, getattr(model, "dtype", None), ray_address)
    report = index_folder(
        path,
        index_dir,
        model,
        acl=acl,
        rebuild=rebuild,
        chunk_size=chunk_size,
        overlap=overlap,
        vector_kind=vector_kind,
        no_acl=no_acl,
        purge=purge,
        max_file_bytes=int(max_file_size * 1e6),
        engine=engine if engine != "local" else None,
    )
    if as_json:
        _emit_json(report.to_json())
        for warning in report.warnings:  # stdout is JSON; the warnings are also in it
            click.echo(f"Warning: {printable(warning)}", err=True)
        return
    click.echo(
        f"Indexed {printable(str(path))} into {printable(str(index_dir))}: {report.added} added, "
        f"{report.updated} updated, {report.deleted} deleted, {report.unchanged} unchanged ({report.documents} "
        f"documents, {report.chunks} chunks, {report.chunks_embedded} embedded, {report.seconds:.1f} s)."
    )
    if report.permissions_changed:
        click.echo(f"Permissions changed for {_count(report.permissions_changed, 'document')} (nothing re-embedded).")
    for skipped in report.skipped:
        click.echo(f"  skipped {printable(skipped.path)}: {printable(skipped.reason)}", err=True)
    for warning in report.warnings:
        click.echo(f"Warning: {printable(warning)}", err=True)


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
    from .api import Index

    with Index.open(_resolve_index_dir(index_dir), embedder=embedder, retrieval=retrieval, models=_models()) as live:
        results = live.search(query, k=k, user=user)["results"]
    if as_json:
        _emit_json({"results": results})
        return
    if not results:
        click.echo("No results.")
    for r in results:
        where = printable(r["source"]) + (f" p.{r['page']}" if r["page"] else "")
        snippet = printable(" ".join(r["text"].split()))
        click.echo(f"{r['rank']:>2}. {r['score']:.3f}  {where}  [chunk {r['chunk_id']}]")
        click.echo(f"    {snippet[:240]}{'...' if len(snippet) > 240 else ''}")


@cli.command()
@_index_dir_option
@click.option("--user", default=None, help="Also show how many documents this user may read, and their groups.")
@click.option(
    "--policy",
    "show_policy",
    is_flag=True,
    help="The index owner's view: rule globs, documents per rule and group members (hidden by default, since they "
    "describe restricted documents).",
)
@click.option("--json", "as_json", is_flag=True, help="Print status as JSON.")
def status(index_dir, user, show_policy, as_json):
    """Show what an index holds: documents, chunks, embedder, and whether a permission policy is in force."""
    from .api import Index

    index_dir = _resolve_index_dir(index_dir)
    with Index.open(index_dir, models=_models()) as live:
        data = live.status(policy=show_policy, share_of=user)
    if as_json:
        _emit_json(data)
        return
    click.echo(f"Index {printable(str(index_dir))} ({data['generation']}, indexed {data['indexed_at']})")
    click.echo(f"  folder:    {printable(str(data['folder']))}")
    click.echo(f"  documents: {data['documents']}   chunks: {data['chunks']}")
    click.echo(
        f"  embedder:  {printable(str(data['embedder']))} ({data['dimension']} dims, {data['vector_index']} index)"
    )
    if data["vector_params"]:
        click.echo("  vectors:   " + ", ".join(f"{key}={value}" for key, value in data["vector_params"].items()))
    if data["acl"]:
        click.echo(f"  policy:    {printable(str(data['policy']))}")
    else:
        click.echo("  policy:    none; every document is readable by everyone")
    if "user" in data:
        mine = data["user"]
        groups = ", ".join(mine["groups"]) or "none"
        click.echo(f"  user {printable(user)}: may read {_count(mine['documents'], 'document')} (groups: {groups})")
    if show_policy and data["acl"]:
        click.echo(f"  default:   {data['default']}")
        for rule in data["rules"]:
            click.echo(f"    {printable(rule['rule'])}: {_count(rule['documents'], 'document')}")
        for name, members in sorted(data["groups"].items()):
            click.echo(f"    group {name}: {', '.join(members) or '(empty)'}")


def _print_answer(answer: dict, streamed: bool) -> None:
    if answer["abstained"]:
        if not streamed:
            click.echo("I don't know.")
        reason = printable(answer["reason"] or "")
        click.echo(click.style(f"  ({reason})", dim=True) if reason else "", nl=bool(reason))
        return
    if not streamed:
        click.echo(printable(answer["answer"]))
    if answer["citations"]:
        click.echo("Sources:")
        for c in answer["citations"]:
            click.echo(f"  [{c['n']}] {printable(c['source'])} (chunk {c['chunk_id']}, score {c['score']:.3f})")


@cli.command()
@click.argument("question")
@_index_dir_option
@click.option(
    "--user", default=None, help="Ask as this user: only documents they may read are used. Default: anonymous."
)
@click.option("-k", "k", cls=_LazyHelpOption, type=click.IntRange(1, 50), default=None, lazy_help=_k_help)
@_generator_options
@click.option("--embedder", default=None, help="Query embedder; must match the index's (the default).")
@_retrieval_option
@click.option(
    "--max-new-tokens",
    type=click.IntRange(1, 2048),
    default=None,
    help="Limit on generated tokens (the answer's length). Default: the reader's own.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the answer, citations and timings as JSON.")
def ask(question, index_dir, user, k, generator, api_key_env, embedder, retrieval, max_new_tokens, as_json):
    """Answer QUESTION from the indexed documents the user may read, with citations, or say "I don't know"."""
    from .api import Index

    index = Index.open(
        _resolve_index_dir(index_dir),
        embedder=embedder,
        generator=_reader(generator, api_key_env),
        retrieval=retrieval,
        models=_models(),
    )
    with index as live:
        live.load_models()  # the generator loads before the question is read, as it always has
        stream = not as_json and sys.stdout.isatty()
        on_token = (lambda token: click.echo(printable(token), nl=False)) if stream else None
        answer = live.ask(question, user=user, k=k, on_token=on_token, max_new_tokens=max_new_tokens)
    if as_json:
        _emit_json(answer)
        return
    if stream:
        click.echo("I don't know." if answer["abstained"] else "")
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
    "long_context (the user's permitted documents in the prompt), oracle. Default: all but rag_raft.",
)
@click.option(
    "--probes",
    default="privacy,freshness,forgetting",
    show_default=True,
    help="Comma-separated probes to run, or 'none'. They probe the fine-tuned variants that --systems trains.",
)
@_generator_options
@click.option(
    "--tune", is_flag=True, help="Choose LoRA's rank and learning rate on the QA set's dev split first (slower)."
)
@click.option(
    "--epochs",
    type=click.IntRange(1, None),
    default=None,
    help="Train each fine-tune for at most this many epochs (default 8 for LoRA, 6 for full fine-tuning, 2 with "
    "--quick); it still stops early when its held-out paraphrases stop improving. A GPU affords more.",
)
@click.option("--progress", is_flag=True, help="Report each stage on stderr (default: only on a terminal).")
@click.option("--embedder", default=None, help="Embedder for the retrieval systems. Default: the bundled MiniLM.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling, training and bootstrap.")
@click.option(
    "--max-questions", type=click.IntRange(1, None), default=None, help="Score at most this many test questions."
)
@click.option("--json", "as_json", is_flag=True, help="Print report.json to stdout as well.")
def eval_command(
    corpus,
    qa,
    acl,
    out,
    quick,
    systems,
    probes,
    generator,
    api_key_env,
    tune,
    epochs,
    progress,
    embedder,
    seed,
    max_questions,
    as_json,
):
    """Compare closed-book, fine-tuning (LoRA, full), RAG, RAG + fine-tuning, a RAFT reading adapter and long context
    on one QA set: accuracy, hallucination, abstention, what each fine-tune learnt, cost, privacy leaks, freshness
    and forgetting. With --generator URL (an LLM server) the systems that change weights are left out."""
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
        api_key_env=api_key_env,
        embedder=embedder,
        seed=seed,
        max_questions=max_questions,
        tune=tune,
        epochs=epochs,
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
@click.option(
    "--index-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the demo's index in this folder: a new or empty one, or one an earlier `rag demo` created. Default: a temporary folder, removed at the end ($RAG_INDEX_DIR is not used).",
)
@click.option("--generator", default=None, help="Generator for the answers. Default: the bundled Gemma 3 270M.")
@click.option("--json", "as_json", is_flag=True, help="Print the transcript as JSON.")
def demo(index_dir, generator, as_json):
    """Index the bundled demo corpus into a fresh index, then ask it the same questions as different users."""
    import tempfile
    from functools import partial

    from ingest.sync import index_folder

    from .answer import answer_question
    from .demo import claim_index_dir, load_script, run_demo
    from .retrieval import Retriever

    script = load_script()
    echo = (lambda line: None) if as_json else click.echo
    with tempfile.TemporaryDirectory(prefix="rag-demo-") as scratch:
        target = index_dir or Path(scratch) / "index"
        claim_index_dir(target)
        echo(f"Indexing the demo corpus {script.corpus} into {target} ...")
        embedder = _models().embedder(None)
        report = index_folder(script.corpus, target, embedder, rebuild=True)
        echo(
            f"Indexed {report.documents} documents ({report.chunks} chunks) in {report.seconds:.1f} s; "
            f"policy: {script.corpus / '.rag-acl.toml'}."
        )
        echo("Loading the generator ...")
        model = _models().generator(generator)
        users = ", ".join(u or "anonymous" for u in script.users)
        echo(f"Asking {len(script.questions)} questions as {users}: each sees only the documents they may read.")
        transcript = run_demo(script, target, partial(Retriever, embedder=embedder), model, answer_question, echo)
    if as_json:
        _emit_json({"index": report.to_json(), "answers": transcript})
    else:
        echo("")
        echo(f'Try it yourself: rag index {script.corpus} && rag ask "..." --user alice')
        echo(f"The corpus, its users and what each may read: {script.corpus.parent / 'README.md'}")


@cli.command()
@_index_dir_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; 0.0.0.0 exposes the server to the network.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option(
    "--allow-anonymous",
    is_flag=True,
    help="Serve requests without an API key, as the anonymous user: documents open to everyone only.",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="A web origin (https://host:port) whose pages may call the API. Default: none (CORS closed).",
)
@_generator_options
@click.option("--embedder", default=None, help="Query embedder; must match the index's (the default).")
@_retrieval_option
def serve(index_dir, host, port, allow_anonymous, cors_origins, generator, api_key_env, embedder, retrieval):
    """Serve the index over HTTP to the users that API keys name (see `rag keys`), with a web page at /.

    \b
    Endpoints: POST /v1/search, POST /v1/ask, POST /v1/chat/completions (OpenAI-compatible), GET /v1/models,
    GET /v1/chunks/ID, GET /v1/status, GET /healthz. Send Authorization: Bearer TOKEN. A new generation
    published by `rag index` is picked up without a restart; so are `rag keys add/revoke`."""
    import uvicorn

    from .api import Index
    from .keys import KeyStore
    from .server import create_app

    index_dir = _resolve_index_dir(index_dir)
    index = Index.open(index_dir, embedder=embedder, generator=_reader(generator, api_key_env), retrieval=retrieval)
    keys = KeyStore(index_dir)
    click.echo(f"Loading models for {index_dir} ...", err=True)
    index.load_models()
    if not keys.list() and not allow_anonymous:
        click.echo(
            f"No API keys yet: every request will get 401. Add one with `rag keys add USER --index-dir {index_dir}`.",
            err=True,
        )
    app = create_app(index, keys, allow_anonymous=allow_anonymous, cors_origins=tuple(cors_origins))
    click.echo(f"Serving {index_dir} as model {index.name!r} on http://{host}:{port}/ (Ctrl+C to stop)", err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=5)
    finally:
        index.close()


@cli.group()
def keys():
    """API keys for `rag serve`: each token is shown once and stored only as a hash in the index directory."""


@keys.command(name="add")
@click.argument("user")
@_index_dir_option
@click.option(
    "--expires-days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Days until the key stops working. Default: never.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key (with its token) as JSON.")
def keys_add(user, index_dir, expires_days, as_json):
    """Create a key for USER and print its token (once: only its hash is kept). The token alone goes to stdout."""
    from .api import Index
    from .keys import KeyStore

    index_dir = _resolve_index_dir(index_dir)
    with Index.open(index_dir) as live:  # a key for an index that does not exist is a typo in --index-dir
        readable = live.status(user=user)["documents"]
    key, token = KeyStore(index_dir).add(user, expires_days=expires_days)
    if as_json:
        _emit_json({"id": key.id, "user": key.user, "token": token, "created": key.created, "expires": key.expires})
        return
    click.echo(
        f"Key {key.id} for {user}, who may read {_count(readable, 'document')} of this index now. Its token, shown only this once:",
        err=True,
    )
    click.echo(token)


@keys.command(name="list")
@_index_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
def keys_list(index_dir, as_json):
    """List the keys (id, user, created, expires, state); tokens are never stored, so never shown."""
    from .keys import KeyStore

    listed = KeyStore(_resolve_index_dir(index_dir)).list()
    if as_json:
        _emit_json({"keys": listed})
        return
    if not listed:
        click.echo("No keys. Add one with `rag keys add USER`.")
    for key in listed:
        until = f", expires {key['expires']}" if key["expires"] else ""
        click.echo(f"{key['id']}  {key['user']:<16} {key['state']:<8} created {key['created']}{until}")


@keys.command(name="revoke")
@click.argument("key_id", metavar="ID")
@_index_dir_option
def keys_revoke(key_id, index_dir):
    """Revoke the key ID (see `rag keys list`). A running server refuses it from its next request on."""
    from .keys import KeyStore

    key = KeyStore(_resolve_index_dir(index_dir)).revoke(key_id)
    click.echo(f"Revoked key {key.id} of {key.user}.")


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli(prog_name="rag")


if __name__ == "__main__":
    main()
    sys.exit(0)
