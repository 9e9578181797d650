"""What reaches a terminal: text from documents and file names with control characters escaped, and one-line
messages for the errors a user can act on (a domain error, a damaged catalog, a full disk)."""

from __future__ import annotations

import errno
import re
import sqlite3

from ingest.common import RagError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Control characters (escape sequences, newlines, carriage returns) in file names or document text, escaped
    before they reach a terminal: a document must not be able to move the cursor or rewrite what was printed."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def one_line_error(err: Exception) -> str:
    """A domain error's own message; a damaged catalog or a full disk met deep inside a library, said plainly."""
    if isinstance(err, RagError):
        return printable(str(err))
    if isinstance(err, sqlite3.DatabaseError) and "full" not in str(err):  # SQLITE_FULL: "database or disk is full"
        return f"the index catalog is damaged ({err}); rebuild it with `rag index PATH --rebuild`"
    reason = getattr(err, "strerror", None) or str(err)
    where = printable(str(getattr(err, "filename", "") or ""))
    return f"disk full ({reason}{': ' + where if where else ''}); free some space and run again"
