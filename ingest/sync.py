"""Incremental indexing: bring an index in step with a folder, embedding only what changed.

A file is unchanged when its mtime and size match the catalog (no read at all), or when its content hash does.
Changed files are re-chunked and re-embedded, deleted files leave the catalog and FAISS, and a policy change
only rewrites the documents' principals. Nothing changed means nothing written.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .catalog import FORMAT_VERSION
from .common import EmbedderMismatchError, UsageError
from .discovery import DEFAULT_MAX_FILE_BYTES, Found, is_case_insensitive, read_inside, too_large, walk
from .embedding import Embedder
from .errors import LoadError, PolicyError
from .local_engine import LocalEngine, with_progress
from .policy import POLICY_FILENAME, Policy, find_policy
from .store import GenerationWriter, current_generation, open_index, recorded_meta, writer_lock
from .types import Skipped
from .vectors import check_kind


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    documents: int = 0
    chunks: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # policy rules that match nothing, --no-acl's consequence
    permissions_changed: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0
    wrote_generation: str | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["skipped"] = [asdict(s) for s in self.skipped]
        return data


@dataclass
class _Pending:
    source: str
    hash: str
    mtime_ns: int
    size: int
    replaces: int | None  # the catalog id of the previous version, if any


def index_folder(
    folder: Path,
    index_dir: Path,
    embedder: Embedder,
    acl: Path | None = None,
    rebuild: bool = False,
    chunk_size: int | None = None,
    overlap: int | None = None,
    vector_kind: str | None = None,
    progress: bool | None = None,
    no_acl: bool = False,
    purge: bool = False,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    engine=None,
) -> IndexReport:
    """Bring the index at ``index_dir`` in step with ``folder``.

    ``no_acl`` indexes without any policy even where the index was built with one (which otherwise fails closed);
    ``purge`` writes a compacted generation even when nothing changed, so deleted text is gone from the files;
    ``engine`` parses, chunks and embeds the changed files: ``ingest.local_engine.LocalEngine`` (the default) in
    this process, ``ingest.ray_engine.RayEngine`` on a Ray cluster; the scan, the catalog and the generation switch
    stay here, in the one writer.
    """
    started = time.perf_counter()
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; give the folder of documents to index")
    if no_acl and acl is not None:
        raise UsageError(f"--acl {acl} and --no-acl contradict each other; give one of them")
    folder = folder.resolve()
    index_dir = Path(index_dir).expanduser().resolve()
    acl = Path(acl).resolve() if acl else None
    policy = Policy.open_to_everyone() if no_acl else find_policy(folder, acl)
    policy.fold_case = is_case_insensitive(folder)
    show = sys.stderr.isatty() if progress is None else progress

    with writer_lock(index_dir):
        dropped_policy = _fail_closed(recorded_meta(index_dir, "policy"), policy, no_acl, index_dir)
        live = None if rebuild or current_generation(index_dir) is None else open_index(index_dir)
        try:
            previous = live.catalog.documents() if live else {}
            params = _check_compatible(live, embedder, chunk_size, overlap)
            check_kind(live.vectors if live else None, vector_kind, index_dir)
        finally:
            if live:
                live.close()
        found, skipped = walk(folder, excluded=[index_dir, folder / POLICY_FILENAME] + ([acl] if acl else []))
        found, aliased = _refuse_differing_hard_links(found, policy)
        report = IndexReport(skipped=skipped + aliased)

        changed: list[_Pending] = []  # new or changed content, parsed after the scan by the engine
        stat_only: dict[int, tuple[int, int]] = {}
        kept: set[str] = set()
        for item in with_progress(found, show, "Reading"):
            source, old = item.source, previous.get(item.source)
            if item.size > max_file_bytes:
                report.skipped.append(Skipped(source, too_large(item.size, max_file_bytes)))
                continue
            kept.add(source)
            if old and old.mtime_ns == item.mtime_ns and old.size == item.size:
                report.unchanged += 1
                continue
            try:
                data = read_inside(folder, source, expected=item, max_bytes=max_file_bytes)
                digest = hashlib.sha256(data).hexdigest()
                if old and old.hash == digest:
                    report.unchanged += 1
                    stat_only[old.id] = (item.mtime_ns, item.size)
                    continue
                changed.append(_Pending(source, digest, item.mtime_ns, item.size, old.id if old else None))
            except LoadError as err:  # unreadable, changed under us: keep the last good version
                report.skipped.append(Skipped(source, str(err)))
                if old:
                    report.unchanged += 1

        deleted = [record for source, record in previous.items() if source not in kept]
        principals = {source: policy.principals_for(source) for source in kept}
        changed_permissions = [
            (previous[s].id, principals[s]) for s in kept if s in previous and previous[s].principals != principals[s]
        ]
        report.permissions_changed = len(changed_permissions)
        report.deleted = len(deleted)
        meta = {
            "format_version": FORMAT_VERSION,
            "embedder": embedder.name,
            "dimension": embedder.dimension,
            "chunk_size": params["chunk_size"],
            "overlap": params["overlap"],
            "folder": str(folder),
            "policy": {
                "open": policy.is_open,
                "source": policy.source,
                "fingerprint": policy.fingerprint(),
                "default": policy.default,
            },
            "groups": policy.groups,
        }

        def count_documents_for_policy() -> None:  # warnings and rule coverage count the documents the index holds
            documents = sorted(kept)
            report.warnings = policy.warnings(documents) if not policy.is_open else []
            if dropped_policy:
                report.warnings.append(
                    f"--no-acl: the policy {dropped_policy} no longer applies; all {len(kept)} documents are now "
                    "readable by everyone, anonymous included"
                )
            meta["policy"]["coverage"] = policy.rule_coverage(documents)

        count_documents_for_policy()

        def live_is_current() -> bool:  # nothing here would change what the live generation holds
            nothing_to_do = not (deleted or stat_only or changed_permissions or purge or rebuild)
            return nothing_to_do and live is not None and _meta_unchanged(index_dir, meta)

        if not changed and live_is_current():
            _finish(report, index_dir, started)
            return report

        writer = GenerationWriter(
            index_dir, embedder.dimension, kind=vector_kind or "flat", rebuild=rebuild or live is None, compact=purge
        )
        try:
            with writer.catalog.transaction():
                _apply_unparsed(writer.catalog, writer.vectors, deleted, stat_only, changed_permissions)
                # Documents are written as they arrive: the driver never holds the whole run. strict: an engine that
                # hands back fewer documents than it was given fails the run instead of dropping some.
                limits = {**params, "max_file_bytes": max_file_bytes}
                streamed = (engine or LocalEngine(embedder)).parse(folder, changed, limits, show) if changed else ()
                wrote, emptied = _apply_streamed(writer, zip(changed, streamed, strict=True), principals, report)
                if emptied:  # found empty by the engine, after the scan counted them as documents
                    kept -= emptied
                    count_documents_for_policy()
                for key, value in meta.items():
                    writer.catalog.set_meta(key, value)
                writer.catalog.set_meta("vector_kind", writer.vectors.kind)
                writer.catalog.set_meta("indexed_at", datetime.now(UTC).isoformat(timespec="seconds"))
            if not wrote and live_is_current():
                writer.abort()  # every changed file failed to load: the live generation is still the right one
            else:
                writer.commit()
                report.wrote_generation = writer.name
        except BaseException:
            writer.abort()
            raise
        _finish(report, index_dir, started)
        return report


def _fail_closed(recorded: dict | None, policy: Policy, no_acl: bool, index_dir: Path) -> str | None:
    """An index built with a policy never silently loses it: a run without one is refused unless ``no_acl`` says
    so. Returns the policy that ``no_acl`` dropped (for the warning that says what became readable), else None."""
    if not recorded or recorded.get("open", True) or not policy.is_open:
        return None
    was = recorded.get("source") or "a permission policy"
    if not no_acl:
        raise PolicyError(
            f"index at {index_dir} was built with the permission policy {was}, but this run has none "
            f"(no --acl and no {POLICY_FILENAME} in the folder); restore it or give --acl FILE. To make every "
            "document readable by everyone, anonymous included, run again with --no-acl"
        )
    return was


def _refuse_differing_hard_links(found: list[Found], policy: Policy) -> tuple[list[Found], list[Skipped]]:
    """A file reachable by several names (hard links) is indexed only if the policy gives every name the same
    readers; otherwise no name is indexed, since a link made in an open folder would publish the file."""
    by_inode: dict[tuple[int, int], list[Found]] = {}
    for item in found:
        by_inode.setdefault((item.device, item.inode), []).append(item)
    refused: set[str] = set()
    skipped: list[Skipped] = []
    for names in by_inode.values():
        if len(names) > 1 and len({policy.principals_for(n.source) for n in names}) > 1:
            for item in names:
                others = ", ".join(n.source for n in names if n is not item)
                refused.add(item.source)
                skipped.append(
                    Skipped(item.source, f"hard link to the same file as {others} under other permissions; not indexed")
                )
    return [f for f in found if f.source not in refused], skipped


def _apply_unparsed(catalog, vectors, deleted, stat_only, changed_permissions) -> None:
    """What the scan alone decides: deleted files leave, touched but identical files get their new stat, and a
    policy change rewrites principals."""
    removed: list[int] = []
    for record in deleted:
        removed += catalog.delete_document(record.id)
    if removed:
        vectors.remove(np.asarray(removed, dtype=np.int64))
    for doc_id, (mtime_ns, size) in stat_only.items():
        catalog.update_stat(doc_id, mtime_ns, size)
    for doc_id, new_principals in changed_permissions:
        catalog.set_principals(doc_id, new_principals)


def _apply_streamed(writer, parsed, principals, report) -> tuple[bool, set[str]]:
    """Write the engine's documents as they arrive: ``parsed`` yields (item, (chunks, vectors, reason)) in the scan's
    order, chunks None for a file that failed to load (it keeps its last good version) and [] for one that holds no
    text (its old version goes). Returns whether the index changed, and the files that hold no text."""
    catalog = writer.catalog
    replaced: set[int] = set()  # old versions' vector ids, removed together: a removal rewrites a flat index
    wrote = False
    emptied: set[str] = set()
    for item, (chunks, vectors, reason) in parsed:
        if chunks is None:  # failed to load: keep the last good version; the next run retries it
            report.skipped.append(Skipped(item.source, reason))
            if item.replaces is not None:
                report.unchanged += 1
            continue
        if not chunks:  # read, and holds no text: the old version leaves the index with its text
            report.skipped.append(Skipped(item.source, reason or "no text to index"))
            emptied.add(item.source)
            if item.replaces is not None:
                replaced.update(catalog.delete_document(item.replaces))
                report.deleted += 1
                wrote = True
            continue
        if item.replaces is not None:
            replaced.update(catalog.delete_document(item.replaces))
            report.updated += 1
        else:
            report.added += 1
        doc_id = catalog.add_document(item.source, item.hash, item.mtime_ns, item.size, principals[item.source])
        ids = catalog.add_chunks(doc_id, chunks)
        if not replaced.isdisjoint(ids):  # an id freed in the catalog and drawn again (a hash collision)
            _remove_vectors(writer, replaced)
        writer.vectors.add(np.asarray(ids, dtype=np.int64), vectors)
        report.chunks_embedded += len(chunks)
        wrote = True
    _remove_vectors(writer, replaced)
    return wrote, emptied


def _remove_vectors(writer, ids: set[int]) -> None:
    if ids:
        writer.vectors.remove(np.asarray(sorted(ids), dtype=np.int64))
        ids.clear()


def _check_compatible(live, embedder: Embedder, chunk_size, overlap) -> dict:
    from .chunking import DEFAULT_CHUNK_TOKENS, DEFAULT_OVERLAP_TOKENS

    if live is None:
        return {
            "chunk_size": chunk_size or DEFAULT_CHUNK_TOKENS,
            "overlap": overlap if overlap is not None else DEFAULT_OVERLAP_TOKENS,
        }
    built_with = live.meta("embedder")
    if built_with != embedder.name or live.meta("dimension") != embedder.dimension:
        raise EmbedderMismatchError(
            f"index at {live.directory} was built with embedder {built_with!r} ({live.meta('dimension')} dims), "
            f"not {embedder.name!r}; use --embedder {built_with} or start over with --rebuild"
        )
    params = {"chunk_size": live.meta("chunk_size"), "overlap": live.meta("overlap")}
    for key, asked in (("chunk_size", chunk_size), ("overlap", overlap)):
        if asked is not None and asked != params[key]:
            raise UsageError(
                f"index at {live.directory} was chunked with {key}={params[key]}, not {asked}; "
                "changing it re-embeds everything: add --rebuild"
            )
    return params


def _meta_unchanged(index_dir: Path, meta: dict) -> bool:
    live = open_index(index_dir, check=False)
    try:
        # Compare as stored: the catalog keeps JSON, where tuples come back as lists.
        return all(live.meta(key) == json.loads(json.dumps(value)) for key, value in meta.items())
    finally:
        live.close()


def _finish(report: IndexReport, index_dir: Path, started: float) -> None:
    report.skipped.sort(key=lambda s: s.path)
    live = open_index(index_dir, check=False)
    try:
        report.documents = live.catalog.document_count()
        report.chunks = live.catalog.chunk_count()
    finally:
        live.close()
    report.seconds = round(time.perf_counter() - started, 3)
