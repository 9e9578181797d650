"""The permission policy: which principals may read which documents.

Pure logic: parse and validate the TOML, then map each document path to its principals. The last matching
rule wins; documents no rule matches get the default. Without a policy, everything is open to everyone.

Paths and globs are compared in Unicode NFC (a folder named ``résumés`` in NFD, as macOS writes it, still matches an
NFC rule), and case-blind where the folder's file system is (``fold_case``): there ``Board/`` and ``board/`` are the
same folder, so a rule for one must cover the other.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import PolicyError

POLICY_FILENAME = ".rag-acl.toml"  # found at the indexed folder's root; never indexed itself
EVERYONE = "*"
_TOP_KEYS = {"default", "groups", "rules"}
_RULE_KEYS = {"path", "allow"}
_NAME = re.compile(r"^[A-Za-z0-9_.@+-]+$")


@dataclass(frozen=True)
class Rule:
    path: str
    allow: tuple[str, ...]
    pattern: re.Pattern
    folded: re.Pattern  # the same glob, case-blind


class Policy:
    def __init__(self, default: str, groups: dict[str, list[str]], rules: list[Rule], source: str, is_open: bool):
        self.default = default
        self.groups = groups
        self.rules = rules
        self.source = source
        self.is_open = is_open
        self.fold_case = False  # set where the folder's file system ignores case (discovery.is_case_insensitive)

    @classmethod
    def open_to_everyone(cls) -> Policy:
        return cls("allow", {}, [], "", is_open=True)

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PolicyError(f"{path}: no such policy file") from None
        except (OSError, UnicodeDecodeError) as err:
            raise PolicyError(f"{path}: cannot read policy ({err})") from err
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, source: str) -> Policy:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise PolicyError(f"{source}: not valid TOML ({err})") from err
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise PolicyError(f"{source}: unknown key {sorted(unknown)[0]!r} (valid keys: default, groups, rules)")
        default = data.get("default", "deny")
        if default not in ("deny", "allow"):
            raise PolicyError(f'{source}: default = {default!r} is not valid (use "deny" or "allow")')
        groups = _parse_groups(data.get("groups", {}), source)
        raw_rules = data.get("rules", [])
        if not isinstance(raw_rules, list):
            raise PolicyError(f"{source}: 'rules' must be an array of tables ([[rules]])")
        rules = [_parse_rule(raw, n, source, groups) for n, raw in enumerate(raw_rules, start=1)]
        return cls(default, groups, rules, source, is_open=False)

    def principals_for(self, source: str) -> frozenset[str]:
        if self.is_open:
            return frozenset({EVERYONE})
        key = _nfc(source)
        for rule in reversed(self.rules):
            if self._matches(rule, key):
                return frozenset(rule.allow)
        return frozenset({EVERYONE}) if self.default == "allow" else frozenset()

    def matching_rule(self, source: str) -> str:
        key = _nfc(source)
        for n in range(len(self.rules), 0, -1):
            if self._matches(self.rules[n - 1], key):
                return f"rule {n} ({self.rules[n - 1].path})"
        return f"default ({self.default})"

    def warnings(self, sources: Iterable[str]) -> list[str]:
        """One line per rule that can never apply, or applies to no document now, naming it and what to fix."""
        keys = [_nfc(s) for s in sources]
        out = []
        for n, rule in enumerate(self.rules, start=1):
            label = f"{self.source}: rule {n} (path {rule.path!r})"
            segments = rule.path.strip().lstrip("/").split("/")
            if ".." in segments:
                out.append(
                    f"{label} contains '..', which never matches: rules match paths inside the folder as written"
                )
            elif not any(self._matches(rule, key) for key in keys):
                hint = ""
                if rule.path.strip().endswith("/"):
                    hint = f": it names a folder; write {rule.path.strip() + '**'!r} for the files in it"
                elif any(rule.folded.match(key) for key in keys):
                    hint = ": it would match ignoring case; check the capitalisation"
                out.append(f"{label} matches no document{hint}")
        return out

    def _matches(self, rule: Rule, key: str) -> bool:
        return bool((rule.folded if self.fold_case else rule.pattern).match(key))

    def rule_coverage(self, sources: Iterable[str]) -> list[tuple[str, int]]:
        """How many documents each rule decides (the last matching one), then the default."""
        labels = [f"rule {n} ({r.path})" for n, r in enumerate(self.rules, start=1)] + [f"default ({self.default})"]
        counts = dict.fromkeys(labels, 0)
        if self.is_open:
            return []
        for source in sources:
            counts[self.matching_rule(source)] += 1
        return list(counts.items())

    def fingerprint(self) -> str:
        body = {
            "default": self.default,
            "groups": self.groups,
            "rules": [[r.path, list(r.allow)] for r in self.rules],
            "open": self.is_open,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def find_policy(folder: Path, acl: Path | None) -> Policy:
    """``--acl FILE`` wins; else ``FOLDER/.rag-acl.toml``; else open to everyone.

    A ``.rag-acl.toml`` that exists in any form but cannot be read (a broken symlink, a folder) is an error, never
    "no policy": a policy that is there but unreadable must not open everything.
    """
    if acl is not None:
        return Policy.load(acl)
    candidate = Path(folder) / POLICY_FILENAME
    if candidate.is_file():
        return Policy.load(candidate)
    if os.path.lexists(candidate):
        raise PolicyError(f"{candidate}: exists but is not a readable file (a broken symlink?); fix or remove it")
    return Policy.open_to_everyone()


def _parse_groups(raw, source: str) -> dict[str, list[str]]:
    if not isinstance(raw, dict):
        raise PolicyError(f'{source}: [groups] must be a table of name = ["user", ...]')
    groups = {}
    for name, members in raw.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise PolicyError(f"{source}: group {name!r} must be a list of user names")
        for member in members:
            if member.startswith("group:"):
                raise PolicyError(f"{source}: group {name!r} contains group {member!r}; groups hold users only")
            if member.startswith("user:"):
                member = member[5:]
            if not _NAME.match(member):
                raise PolicyError(f"{source}: group {name!r} has an invalid user name {member!r}")
        groups[name] = sorted({m.removeprefix("user:") for m in members})
    return groups


def _parse_rule(raw, n: int, source: str, groups: dict) -> Rule:
    where = f"{source}: rule {n}"
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: must be a table with 'path' and 'allow'")
    if isinstance(raw.get("path"), str):
        where += f" (path {raw['path']!r})"
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown key {sorted(unknown)[0]!r} (valid keys: path, allow)")
    if "path" not in raw or not isinstance(raw["path"], str) or not raw["path"].strip():
        raise PolicyError(f"{where}: missing 'path' (a glob like \"finance/**\")")
    if "allow" not in raw:
        raise PolicyError(f'{where}: missing \'allow\' (a list like ["group:finance", "user:carol", "*"])')
    allow = raw["allow"]
    if not isinstance(allow, list) or not all(isinstance(p, str) for p in allow):
        raise PolicyError(f"{where}: 'allow' must be a list of principals")
    for principal in allow:
        _check_principal(principal, where, groups)
    glob = _nfc(raw["path"])
    pattern = compile_glob(glob, where)
    return Rule(raw["path"], tuple(sorted(set(allow))), pattern, re.compile(pattern.pattern, re.IGNORECASE))


def _check_principal(principal: str, where: str, groups: dict) -> None:
    if principal == EVERYONE:
        return
    kind, _, name = principal.partition(":")
    if kind not in ("user", "group") or not _NAME.match(name or ""):
        raise PolicyError(f"{where}: unknown principal {principal!r} (use 'user:NAME', 'group:NAME' or '*')")
    if kind == "group" and name not in groups:
        known = ", ".join(sorted(groups)) or "none defined"
        raise PolicyError(f"{where}: unknown group {name!r} (groups: {known})")


def compile_glob(glob: str, where: str = "glob") -> re.Pattern:
    """``*`` stays within a path segment, ``**`` crosses folders, ``?`` is one character, ``[...]`` a class."""
    glob = glob.strip().lstrip("/")
    while glob.startswith("./"):
        glob = glob[2:]
    out, i = [], 0
    while i < len(glob):
        ch = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = glob.find("]", i + 2 if glob[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                raise PolicyError(f"{where}: bad glob {glob!r}: unclosed '['")
            body = glob[i + 1 : end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append(f"(?!/)[{body.replace(chr(92), chr(92) * 2)}]")  # a class never matches '/'
            i = end + 1
        else:
            out.append(re.escape(ch))
            i += 1
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error as err:
        raise PolicyError(f"{where}: bad glob {glob!r}: {err}") from err


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)
