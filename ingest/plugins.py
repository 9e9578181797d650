"""Loader plugins: other installed packages add file types through the ``docrag.loaders`` entry-point group.

A plugin declares, in its ``pyproject.toml``::

    [project.entry-points."docrag.loaders"]
    csv = "docrag_csv:load"

The entry point's name is a file suffix (with or without the dot, any case). Its value is a callable that takes the
file's content as ``bytes`` (read by docrag without following links, so a plugin never opens a path an attacker
could swap) and returns the document's text as ``str``; docrag normalises it (``loaders.normalise``) and chunks
it like any other document. A plugin for a built-in suffix replaces the built-in loader. When two plugins name the
same suffix, the one whose distribution name sorts first wins, so the choice does not depend on install order.

Entry points are read once per process. A plugin that fails to import or raises skips only the files it was asked
to read, with the reason, like a broken file.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

GROUP = "docrag.loaders"


@cache
def plugin_loaders() -> dict[str, EntryPoint]:
    """Suffix (".csv") -> the entry point that loads it; call ``plugin_loaders.cache_clear()`` after installing one."""
    found: dict[str, EntryPoint] = {}
    ranked = sorted(entry_points(group=GROUP), key=lambda ep: (ep.dist.name if ep.dist else "", ep.name))
    for entry_point in ranked:
        found.setdefault("." + entry_point.name.strip().lstrip(".").lower(), entry_point)
    return found


def read_with_plugin(suffix: str, data: bytes) -> str | None:
    """The text a plugin extracts from a file's content, or None when no plugin takes its suffix. Raises what the
    plugin raises (``loaders.load_bytes`` turns it into a skip reason)."""
    entry_point = plugin_loaders().get(suffix)
    if entry_point is None:
        return None
    text = entry_point.load()(data)
    if not isinstance(text, str):
        raise TypeError(f"loader {entry_point.value} returned {type(text).__name__}, not str")
    return text
