"""The permission policy: parsing, validation errors that name the file and the rule, globs, last rule wins."""

import pytest

from ingest.errors import PolicyError
from ingest.policy import Policy, compile_glob, find_policy
from rag.permissions import query_principals, readable

POLICY = """
default = "deny"
[groups]
finance = ["alice", "bob"]
hr = ["erin", "bob"]
[[rules]]
path = "finance/**"
allow = ["group:finance", "user:carol"]
[[rules]]
path = "handbook/**"
allow = ["*"]
[[rules]]
path = "finance/board/*.md"
allow = ["user:alice"]
[[rules]]
path = "**/*.pdf"
allow = ["group:hr"]
"""


@pytest.fixture
def policy():
    return Policy.parse(POLICY, "acl.toml")


def test_parse_reads_default_groups_and_rules(policy):
    assert policy.default == "deny"
    assert policy.groups == {"finance": ["alice", "bob"], "hr": ["bob", "erin"]}
    assert [r.path for r in policy.rules] == ["finance/**", "handbook/**", "finance/board/*.md", "**/*.pdf"]
    assert policy.rules[0].allow == ("group:finance", "user:carol")
    assert not policy.is_open and policy.source == "acl.toml"


def test_last_matching_rule_wins(policy):
    assert policy.principals_for("finance/budget.md") == {"group:finance", "user:carol"}
    assert policy.principals_for("finance/board/minutes.md") == {"user:alice"}
    assert policy.principals_for("finance/board/deep/minutes.md") == {"group:finance", "user:carol"}
    assert policy.principals_for("finance/report.pdf") == {"group:hr"}
    assert policy.principals_for("handbook/a/b/c.md") == {"*"}


def test_default_deny_and_allow():
    deny = Policy.parse('default = "deny"\n', "a.toml")
    allow = Policy.parse('default = "allow"\n', "a.toml")
    assert deny.principals_for("x.md") == frozenset()
    assert allow.principals_for("x.md") == {"*"}
    assert Policy.parse("", "a.toml").default == "deny"


def test_no_policy_is_open_to_everyone(tmp_path):
    policy = find_policy(tmp_path, None)
    assert policy.is_open
    assert policy.principals_for("any/thing.md") == {"*"}
    assert readable(policy.principals_for("x"), query_principals({}, None))
    assert policy.rule_coverage(["a", "b"]) == []


@pytest.mark.parametrize(
    ("glob", "matches", "misses"),
    [
        ("finance/**", ["finance/a.md", "finance/x/y.md"], ["finance", "financex/a.md", "a/finance/b.md"]),
        ("**/*.pdf", ["a.pdf", "x/a.pdf", "x/y/z.pdf"], ["a.pdfx", "a.md"]),
        ("*.md", ["a.md"], ["x/a.md"]),
        ("docs/*", ["docs/a"], ["docs/a/b", "docs"]),
        ("a?c.txt", ["abc.txt"], ["ac.txt", "a/c.txt", "abbc.txt"]),
        ("[ab]*.md", ["a1.md", "b.md"], ["c.md"]),
        ("[!ab]*.md", ["c.md"], ["a.md"]),
        ("x/**/y.md", ["x/y.md", "x/1/2/y.md"], ["x/ay.md"]),
        ("a+b (1).md", ["a+b (1).md"], ["aab (1).md"]),
        ("/top.md", ["top.md"], ["x/top.md"]),
        ("./top.md", ["top.md"], ["x/top.md"]),
        ("a[/]b", [], ["a/b"]),
        ("[!x]", ["a"], ["/", "x"]),
        ("**", ["a", "a/b/c.md"], []),
    ],
)
def test_globs(glob, matches, misses):
    pattern = compile_glob(glob)
    for path in matches:
        assert pattern.match(path), (glob, path)
    for path in misses:
        assert not pattern.match(path), (glob, path)


def _rules(*bodies):
    return '[groups]\ng = ["u"]\n' + "".join(f"[[rules]]\n{b}\n" for b in bodies)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('defualt = "deny"', "acl.toml: unknown key 'defualt'"),
        ('default = "maybe"', "acl.toml: default = 'maybe' is not valid"),
        (_rules('path = "a/**"\nallow = ["*"]\nalow = ["*"]'), "acl.toml: rule 1 (path 'a/**'): unknown key 'alow'"),
        (_rules('path = "a/**"\nallow = ["*"]', 'path = "b/**"'), "acl.toml: rule 2 (path 'b/**'): missing 'allow'"),
        (_rules('allow = ["*"]'), "acl.toml: rule 1: missing 'path'"),
        (_rules('path = "x/[ab"\nallow = ["*"]'), "acl.toml: rule 1 (path 'x/[ab'): bad glob"),
        (_rules('path = "[z-a].md"\nallow = ["*"]'), "acl.toml: rule 1 (path '[z-a].md'): bad glob"),
        (_rules('path = 3\nallow = ["*"]'), "acl.toml: rule 1: missing 'path'"),
        (
            _rules('path = "a"\nallow = ["*"]', 'path = "x/**"\nallow = ["*"]', 'path = "y/**"\nallow = ["admins"]'),
            "acl.toml: rule 3 (path 'y/**'): unknown principal 'admins' (use 'user:NAME', 'group:NAME' or '*')",
        ),
        (_rules('path = "a"\nallow = ["role:x"]'), "acl.toml: rule 1 (path 'a'): unknown principal 'role:x'"),
        (_rules('path = "a"\nallow = ["user:"]'), "acl.toml: rule 1 (path 'a'): unknown principal 'user:'"),
        (_rules('path = "a"\nallow = ["group:nope"]'), "acl.toml: rule 1 (path 'a'): unknown group 'nope'"),
        (_rules('path = "a"\nallow = "*"'), "acl.toml: rule 1 (path 'a'): 'allow' must be a list"),
        ('[groups]\nall = ["group:finance"]', "acl.toml: group 'all' contains group 'group:finance'"),
        ('[groups]\nall = "alice"', "acl.toml: group 'all' must be a list of user names"),
        ("default = ", "acl.toml: not valid TOML"),
        ('rules = "x"', "acl.toml: 'rules' must be an array of tables"),
    ],
)
def test_every_validation_error_names_the_file_and_the_rule(text, expected):
    with pytest.raises(PolicyError) as err:
        Policy.parse(text, "acl.toml")
    assert str(err.value).startswith(expected), str(err.value)
    assert "\n" not in str(err.value)


def test_load_names_the_file(tmp_path):
    path = tmp_path / "acl.toml"
    path.write_text('[[rules]]\npath = "a"\nallow = ["admins"]\n')
    with pytest.raises(PolicyError, match=rf"^{path}: rule 1 \(path 'a'\): unknown principal 'admins'"):
        Policy.load(path)


def test_find_policy_prefers_acl_then_folder_file(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / ".rag-acl.toml").write_text('default = "deny"\n')
    acl = tmp_path / "other.toml"
    acl.write_text('default = "allow"\n')
    assert find_policy(folder, None).default == "deny"
    assert find_policy(folder, None).source == str(folder / ".rag-acl.toml")
    assert find_policy(folder, acl).default == "allow"
    with pytest.raises(PolicyError, match="missing.toml"):
        find_policy(folder, tmp_path / "missing.toml")


def test_query_principals_for_users_and_anonymous(policy):
    assert query_principals(policy.groups, None) == {"*"}
    assert query_principals(policy.groups, "bob") == {"*", "user:bob", "group:finance", "group:hr"}
    assert query_principals(policy.groups, "mallory") == {"*", "user:mallory"}


def test_who_reads_what(policy):
    def can(user, source):
        return readable(policy.principals_for(source), query_principals(policy.groups, user))

    assert can(None, "handbook/x.md") and not can(None, "finance/a.md")
    assert can("carol", "finance/a.md") and not can("carol", "finance/board/m.md")
    assert can("alice", "finance/board/m.md") and not can("bob", "finance/board/m.md")
    assert can("erin", "finance/a.pdf") and not can("alice", "finance/a.pdf")
    assert not can("alice", "misc/x.md")


def test_rule_coverage_counts_the_deciding_rule(policy):
    coverage = dict(policy.rule_coverage(["finance/a.md", "finance/board/m.md", "x.pdf", "misc.md", "y.md"]))
    assert coverage == {
        "rule 1 (finance/**)": 1,
        "rule 2 (handbook/**)": 0,
        "rule 3 (finance/board/*.md)": 1,
        "rule 4 (**/*.pdf)": 1,
        "default (deny)": 2,
    }


def test_fingerprint_is_stable_and_changes_with_the_policy(policy):
    assert policy.fingerprint() == Policy.parse(POLICY, "elsewhere.toml").fingerprint()
    assert policy.fingerprint() != Policy.parse(POLICY.replace("user:carol", "user:dave"), "a").fingerprint()
    assert policy.fingerprint() != Policy.open_to_everyone().fingerprint()
