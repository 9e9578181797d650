"""What ``rag status`` (and an HTTP status) may say about an index, and to whom.

The public view holds what describes the index as a whole: counts, embedder, whether a policy is in force. Group
members, rule globs (folder names like ``finance/layoffs-2031/**``) and per-rule document counts describe restricted
documents, so they appear only in the owner's view (``policy=True``), meant for whoever runs ``rag index`` and can
read the index dir, and the policy file, anyway. A user's view adds what that user may read, and nothing more.
"""

from __future__ import annotations

from ingest.store import OpenIndex

from .permissions import query_principals, readable


def status_data(live: OpenIndex, user: str | None = None, policy: bool = False) -> dict:
    """The ``status --json`` object: the public view, plus the ``user``'s share and/or the owner's ``policy`` view."""
    recorded = live.meta("policy", {}) or {}
    data = {
        "documents": live.catalog.document_count(),
        "chunks": live.catalog.chunk_count(),
        "embedder": live.meta("embedder"),
        "dimension": live.meta("dimension"),
        "acl": not recorded.get("open", True),
        "policy": recorded.get("source"),
        "folder": live.meta("folder"),
        "index_dir": str(live.directory),
        "generation": live.generation,
        "indexed_at": live.meta("indexed_at"),
        "chunk_size": live.meta("chunk_size"),
        "overlap": live.meta("overlap"),
        "vector_index": live.vectors.kind,
        "vector_params": live.vectors.params(),
    }
    groups = live.meta("groups", {}) or {}
    if user is not None:
        principals = query_principals(groups, user)
        readable_docs = [d for d in live.catalog.documents().values() if readable(d.principals, principals)]
        data["user"] = {
            "name": user,
            "groups": sorted(p.removeprefix("group:") for p in principals if p.startswith("group:")),
            "documents": len(readable_docs),
        }
    if policy:
        data["default"] = recorded.get("default")
        data["rules"] = [{"rule": rule, "documents": n} for rule, n in recorded.get("coverage", [])]
        data["groups"] = groups
    return data
