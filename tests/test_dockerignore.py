"""The .dockerignore matcher, by example: Docker's rules, not .gitignore's.

Every row here was checked against a real build (tests/test_dockerignore_engine.py
does that for a sample): Docker 20.10 with BuildKit ("legacy") and Docker 28's
classic builder ("classic"); "buildkit" is the default and shares classic's matcher.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_pipelines.pipelines.docker_optimization.model.dockerignore import (
    FLAVORS,
    DockerIgnore,
    clean,
    compile_pattern,
    excluded_by_each,
    parse_lines,
)


def excluded(patterns: list[str] | str, path: str, flavor: str = "buildkit") -> bool:
    text = patterns if isinstance(patterns, str) else "\n".join(patterns)
    return DockerIgnore.from_text(text, flavor=flavor).excluded(path)


# (pattern, path, excluded?) -- the same answer from every Docker version.
@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize(
    "pattern, path, expected",
    [
        # a bare name is anchored at the context root (unlike .gitignore)
        ("node_modules", "node_modules/react/index.js", True),
        ("node_modules", "node_modules", True),
        ("node_modules", "web/node_modules/react/index.js", False),
        ("*.pyc", "app.pyc", True),
        ("*.pyc", "src/app.pyc", False),
        # **/ reaches any depth, the root included
        ("**/node_modules", "node_modules/react/index.js", True),
        ("**/node_modules", "a/b/node_modules/react/index.js", True),
        ("**/node_modules", "a/node_modules_old/x.js", False),
        ("**/*.pyc", "app.pyc", True),
        ("**/*.pyc", "src/deep/er/app.pyc", True),
        ("src/**/*.pyc", "src/app.pyc", True),
        ("src/**/*.pyc", "lib/src/app.pyc", False),
        # ** alone is everything
        ("**", "README.md", True),
        ("**", "a/b/c/d.txt", True),
        # dir/** is everything below dir (a file named "dir" is not below it)
        ("build/**", "build/out/app.bin", True),
        ("build/**", "build", False),
        ("build/**", "buildx/app.bin", False),
        # a pattern that matches a directory excludes all that is under it
        ("docs", "docs/guide/intro.md", True),
        ("docs/*", "docs/guide/intro.md", True),
        ("*/tmp", "app/tmp/cache/x", True),
        ("*/tmp", "app/sub/tmp/x", False),
        # * and ? never cross "/"
        ("*", "a.txt", True),
        ("*.txt", "docs/a.txt", False),
        ("?.txt", "a.txt", True),
        ("?.txt", "ab.txt", False),
        ("x?y.txt", "xzy.txt", True),
        ("x?y.txt", "x/y.txt", False),
        # [^a] negates; [!a] is a class of "!" and "a" (Go regexp, not shell glob)
        ("[^a].txt", "b.txt", True),
        ("[^a].txt", "a.txt", False),
        ("[!a].txt", "!.txt", True),
        ("[!a].txt", "a.txt", True),
        ("[!a].txt", "b.txt", False),
        ("[a-c]x", "bx", True),
        ("[a-c]x", "dx", False),
        # "*" inside a class becomes "[^/]*", closing the class early: [a*]b is "[a[^/]*]b"
        ("[a*]b", "a]b", True),
        ("[a*]b", "ab", False),
        # \ escapes the next character ...
        ("\\*.txt", "*.txt", True),
        ("\\*.txt", "a.txt", False),
        ("\\!keep.txt", "!keep.txt", True),
        ("a\\[1\\]", "a[1]", True),
        ("with\\ space.txt", "with space.txt", True),
        # ... into a Go regexp escape: \d is a digit
        ("log\\d", "log7", True),
        ("log\\d", "logd", False),
        # a dot is a dot, and names are case-sensitive
        ("*.md", "READMEmd", False),
        ("*.MD", "README.md", False),
        # Go's "$" ends the text; Python's would also match before a final newline
        ("*.txt", "a.txt\n", False),
    ],
)
def test_pattern(pattern: str, path: str, expected: bool, flavor: str) -> None:
    assert excluded([pattern], path, flavor) is expected


# Where Docker versions disagree: (patterns, path, {flavor: excluded?}).
# "legacy" is Docker 20.10 (pkg/fileutils); "classic"/"buildkit" are Docker 23+ (moby/patternmatcher).
@pytest.mark.parametrize(
    "patterns, path, expected",
    [
        # 20.10 escapes only "." and "$": "+" is a regexp repetition there
        (["a+.txt"], "a+.txt", {"legacy": False, "classic": True, "buildkit": True}),
        (["a+.txt"], "aa.txt", {"legacy": True, "classic": False, "buildkit": False}),
        # patternmatcher's suffix shortcut: "**.md" is any path ending in ".md"; 20.10 reads it as "**/.md"
        (["**.md"], "docs/guide.md", {"legacy": False, "classic": True, "buildkit": True}),
        (["**.md"], "docs/.md", {"legacy": True, "classic": True, "buildkit": True}),
        # patternmatcher's exact shortcut takes "^" literally; 20.10's regexp takes it as an anchor
        (["^a.txt"], "a.txt", {"legacy": True, "classic": False, "buildkit": False}),
        (["^a.txt"], "^a.txt", {"legacy": False, "classic": True, "buildkit": True}),
        # 20.10 tries a parent directory only at the pattern's own depth: "!src" re-includes src/m.pyc
        (["**/*.pyc", "!src"], "src/m.pyc", {"legacy": False, "classic": True, "buildkit": True}),
        # ... and "**/c" (two parts) misses a/b/c once the walk enters a/b/c for a "!" pattern
        (["**/c", "!a/b/c/keep"], "a/b/c/other", {"legacy": False, "classic": True, "buildkit": True}),
        (["**/c", "!a/b/c/keep"], "a/b/c/keep", {"legacy": False, "classic": False, "buildkit": False}),
        # an excluded directory is entered only for a "!" pattern naming a path under it literally;
        # BuildKit's fsutil enters every directory once a "!" pattern has a wildcard
        (
            ["**/node_modules", "!**/node_modules/keep.js"],
            "node_modules/keep.js",
            {"legacy": True, "classic": True, "buildkit": False},
        ),
        (
            ["**/node_modules", "!**/node_modules/keep.js"],
            "node_modules/drop.js",
            {"legacy": True, "classic": True, "buildkit": True},
        ),
        (["vendor", "!vendor/*/keep.go"], "vendor/a/keep.go", {"legacy": True, "classic": True, "buildkit": False}),
    ],
)
def test_versions_differ(patterns: list[str], path: str, expected: dict[str, bool]) -> None:
    assert {flavor: excluded(patterns, path, flavor) for flavor in FLAVORS} == expected


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize(
    "patterns, path, expected",
    [
        # the last matching pattern wins; "!" re-includes
        (["*.md", "!README.md"], "README.md", False),
        (["*.md", "!README.md"], "CHANGES.md", True),
        (["!README.md", "*.md"], "README.md", True),
        (["*.md", "!README.md", "README.md"], "README.md", True),
        # re-including inside an excluded directory works when the "!" pattern spells the path out
        (["docs", "!docs/keep.md"], "docs/keep.md", False),
        (["docs", "!docs/keep.md"], "docs/drop.md", True),
        (["docs", "!docs/*.md"], "docs/a.md", False),
        (["docs", "!docs/*.md"], "docs/sub/b.md", True),
        (["node_modules", "!node_modules/keep/index.js"], "node_modules/keep/index.js", False),
        (["node_modules", "!node_modules/keep/index.js"], "node_modules/keep/other.js", True),
        # a trailing /** still names the directory literally
        (["vendor", "!vendor/keep/**"], "vendor/keep/a/b.go", False),
        (["vendor", "!vendor/keep/**"], "vendor/drop/b.go", True),
        # exclude everything but a few things
        (["*", "!src", "!Dockerfile"], "src/app/main.py", False),
        (["*", "!src", "!Dockerfile"], "Dockerfile", False),
        (["*", "!src", "!Dockerfile"], "README.md", True),
        (["*", "!src", "!Dockerfile"], "docs/guide.md", True),
        (["**", "!src"], "src/main.py", False),
        (["**", "!src"], "tests/test_main.py", True),
    ],
)
def test_reinclusion(patterns: list[str], path: str, expected: bool, flavor: str) -> None:
    assert excluded(patterns, path, flavor) is expected


@pytest.mark.parametrize(
    "pattern, cleaned",
    [
        ("./a/../b/", "b"),
        ("/leading", "leading"),
        ("trailing/", "trailing"),
        ("a//b/./c", "a/b/c"),
        ("//x", "x"),
        ("/", "/"),
        (".", "."),
        ("../outside", "../outside"),
    ],
)
def test_clean(pattern: str, cleaned: str) -> None:
    assert clean(pattern) == cleaned


@pytest.mark.parametrize(
    "text, patterns",
    [
        ("./a/../b/\n/c\nd/\n", ["b", "c", "d"]),
        # comments only in the first column; blank and blank-looking lines dropped
        ("# comment\n\n   \n\t\nnode_modules\n", ["node_modules"]),
        ("  # not a comment\n", ["# not a comment"]),
        ("\\#hash\n", ["\\#hash"]),
        # surrounding whitespace trimmed, inner kept
        ("  with space.txt  \n", ["with space.txt"]),
        # "!" with spaces around it: trimmed on both sides, then cleaned
        ("!keep.txt\n", ["!keep.txt"]),
        ("  !   keep.txt  \n", ["!keep.txt"]),
        ("! ./docs/../keep.txt\n", ["!keep.txt"]),
        ("! /keep.txt\n", ["!keep.txt"]),
        # a BOM is dropped from the first line only (and then "#" is a comment again)
        ("\ufeffnode_modules\n", ["node_modules"]),
        ("\ufeff# comment\nx\n", ["x"]),
        ("a\n\ufeffb\n", ["a", "\ufeffb"]),
        # CRLF files; a last line without newline
        ("a\r\nb\r\nc", ["a", "b", "c"]),
        # Go splits on "\n" only and trims only Unicode spaces (Python's splitlines/strip do more)
        ("a\rb\nc\u2028d\n\x1ce\n", ["a\rb", "c\u2028d", "\x1ce"]),
        ("", []),
    ],
)
def test_parse_lines(text: str, patterns: list[str]) -> None:
    assert parse_lines(text) == patterns


def test_a_file_reads_like_docker_reads_it() -> None:
    text = "\ufeff# build outputs\n\n/dist/\n./a/../b.txt\n  **/*.pyc  \n! dist/keep.txt\r\n"
    ignore = DockerIgnore.from_text(text, source=".dockerignore")
    assert [(p.text, p.exclusion) for p in ignore.patterns] == [
        ("dist", False),
        ("b.txt", False),
        ("**/*.pyc", False),
        ("dist/keep.txt", True),
    ]
    assert ignore.source == ".dockerignore"
    assert ignore.has_reinclusions
    assert ignore.excluded("dist/app.js")
    assert not ignore.excluded("dist/keep.txt")
    assert ignore.excluded("b.txt")
    assert ignore.excluded("src/app.pyc")
    assert not ignore.excluded("src/app.py")


@pytest.mark.parametrize(
    "text",
    [
        "!\n",  # a lone "!" re-includes nothing: Docker refuses it
        "! \n",
        "!/\n",  # "!/" cleans to "!"
        "[\n",  # unclosed class
        "a[b\n",
        "[]a]\n",  # Go's filepath.Match wants a character before "]" or "-"
        "[a-]\n",
        "[-a]\n",
        "[z-a]\n",  # reversed range
        "trailing\\\n",  # a trailing backslash
    ],
)
def test_patterns_docker_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        DockerIgnore.from_text(text)


@pytest.mark.parametrize("pattern", ["(a", "a++", "+a"])
def test_regexp_errors_only_where_the_pattern_is_a_regexp(pattern: str) -> None:
    """20.10 passed "(" and "+" through to Go's regexp, where these don't compile (or mean something else)."""
    assert DockerIgnore([pattern]).patterns[0].text == pattern  # literal for patternmatcher
    if pattern == "+a":  # Go allows repeating "^": "^+a$" is "^a$"
        assert DockerIgnore([pattern], flavor="legacy").excluded("a")
    else:
        with pytest.raises(ValueError):
            DockerIgnore([pattern], flavor="legacy")


def test_compile_pattern_is_a_regex_per_flavor() -> None:
    assert compile_pattern("**/*.pyc").match("a/b.pyc")
    assert compile_pattern("src/**").match("src/x/y")
    assert not compile_pattern("src/**").match("srcx")
    assert compile_pattern("a+b", "legacy").match("aab")
    assert not compile_pattern("a+b").match("aab")


def test_constructor_cleans_like_patternmatcher_new() -> None:
    ignore = DockerIgnore(["  ./dist/  ", "", "!dist/keep.txt"])
    assert [p.text for p in ignore.patterns] == ["dist", "dist/keep.txt"]
    assert ignore.excluded("dist/a") and not ignore.excluded("dist/keep.txt")


def test_unknown_flavor() -> None:
    with pytest.raises(ValueError, match="flavor"):
        DockerIgnore([], flavor="podman")


def test_sent_keeps_sizes_of_what_the_builder_receives() -> None:
    files = {
        "Dockerfile": 120,
        "src/app.py": 2_000,
        "src/app.pyc": 3_000,
        "node_modules/x/index.js": 50_000,
        "web/node_modules/y.js": 7,
        "README.md": 900,
        "docs/keep.md": 10,
    }
    ignore = DockerIgnore.from_text("node_modules\n**/*.pyc\n*.md\ndocs\n!docs/keep.md\n")
    assert ignore.sent(files) == {
        "Dockerfile": 120,
        "src/app.py": 2_000,
        "web/node_modules/y.js": 7,
        "docs/keep.md": 10,
    }
    assert DockerIgnore.empty().sent(files) == files
    assert DockerIgnore.empty().sent(files) is not files
    assert not DockerIgnore.empty().excluded("anything")


# -- the fast paths agree with the slow, pattern-by-pattern answer ---------------------------

_SEGMENTS = st.sampled_from(["a", "b", "src", "node_modules", "tests", "x.pyc", ".env", "keep", "__pycache__"])
_PATHS = st.lists(st.lists(_SEGMENTS, min_size=1, max_size=4).map("/".join), min_size=1, max_size=30, unique=True)
_PATTERNS = st.lists(
    st.sampled_from(
        [
            "node_modules",
            "**/node_modules",
            "*.pyc",
            "**/*.pyc",
            "src",
            "src/*",
            "!src/keep",
            "!**/keep",
            "tests",
            "**/tests",
            "a/**/b",
            ".env",
            "!a",
            "**/__pycache__",
            "b/*/keep",
            "[^a]*",
            "**.pyc",
            "src/**",
            "!src/**",
            "a/b*",
            "s*c",
            "*/keep",
            "x.py?",
            "**/a/*",
            "a/**/keep",
        ]
    ),
    max_size=6,
)


def _each_pattern(ignore: DockerIgnore, path: str, parent: list[bool] | None) -> tuple[bool, list[bool] | None]:
    """patternmatcher's MatchesUsingParentResults as written: every pattern asked in turn (legacy: its own walk)."""
    if ignore.flavor == "legacy":
        return ignore._matches(path, None)
    matched, hits = False, []
    for index, p in enumerate(ignore.patterns):
        hit = parent is not None and parent[index]
        if not hit and p.exclusion == matched:
            hit = p.match(path)
        hits.append(hit)
        if hit:
            matched = not p.exclusion
    return matched, hits


def _slow_excluded(ignore: DockerIgnore, path: str) -> bool:
    """The walk without shortcuts: every pattern tried on every directory above ``path`` and on ``path``."""
    parts, state = path.split("/"), (False, None)
    for depth in range(1, len(parts)):
        if state[0]:
            return True
        matched, hits = _each_pattern(ignore, "/".join(parts[:depth]), state[1])
        state = (
            matched
            and ignore._prune
            and not any(t.startswith("/".join(parts[:depth]) + "/") for t in ignore._reincluded),
            hits,
        )
    return state[0] or _each_pattern(ignore, path, state[1])[0]


@given(patterns=_PATTERNS, paths=_PATHS, flavor=st.sampled_from(FLAVORS))
@settings(max_examples=300, deadline=None)
def test_sent_and_excluded_agree_with_the_pattern_by_pattern_walk(patterns, paths, flavor) -> None:
    ignore = DockerIgnore(patterns, flavor=flavor)
    files = {p: len(p) for p in paths}
    expected = {p: s for p, s in files.items() if not _slow_excluded(DockerIgnore(patterns, flavor=flavor), p)}
    assert ignore.sent(files) == expected
    assert [p for p in paths if not DockerIgnore(patterns, flavor=flavor).excluded(p)] == list(expected)


@given(patterns=_PATTERNS.map(lambda ps: [p for p in ps if not p.startswith("!")]), paths=_PATHS)
@settings(max_examples=200, deadline=None)
def test_excluded_by_each_is_each_pattern_asked_alone(patterns, paths) -> None:
    each = excluded_by_each(patterns, paths)
    assert each == {p: [f for f in paths if DockerIgnore([p]).excluded(f)] for p in patterns}


def test_excluded_by_each_counts_a_file_for_every_pattern_that_drops_it() -> None:
    files = ["app.py", "tests/__pycache__/t.pyc", "tests/t.py", "lib/x.pyc"]
    assert excluded_by_each(["**/tests", "**/*.pyc", "**/.git"], files) == {
        "**/tests": ["tests/__pycache__/t.pyc", "tests/t.py"],
        "**/*.pyc": ["tests/__pycache__/t.pyc", "lib/x.pyc"],
        "**/.git": [],
    }


_GLOB_PARTS = st.sampled_from(["a", "b", "src", ".", "/", "*", "**", "?", "keep", "x.py", "^", "[ab]", "\\*", "$"])


@given(patterns=st.lists(st.lists(_GLOB_PARTS, min_size=1, max_size=5).map("".join), max_size=8), paths=_PATHS)
@settings(max_examples=300, deadline=None)
def test_the_index_finds_exactly_the_patterns_that_match(patterns, paths) -> None:
    try:
        ignore = DockerIgnore(patterns)
    except ValueError:
        return  # an invalid pattern: Docker refuses the build, and so does DockerIgnore
    for path in paths + [p.rsplit("/", 1)[0] for p in paths if "/" in p]:
        assert ignore._index.hits(path) == [i for i, p in enumerate(ignore.patterns) if p.match(path)]


def test_a_pattern_of_names_is_asked_once_per_name_with_the_answers_of_each_path() -> None:
    ignore = DockerIgnore(["**/*.pyc", "**/.env.*", "node_modules", "src/*.py"])
    paths = ["a.pyc", "src/a.pyc", "src/deep/a.pyc", "x\n/a.pyc", ".env.local", "src/.env.local", "src/app.py"]
    for path in paths:  # "x\n/a.pyc": "**/" does not reach across a newline, so that path is asked whole
        assert ignore._index.hits(path) == [i for i, p in enumerate(ignore.patterns) if p.match(path)], path
    assert ignore._index.hits("x\n/a.pyc") == []
    assert sorted(ignore._index.by_name or {}) == [".env.local", "a.pyc", "app.py"]
    assert DockerIgnore(["**/*.pyc", "*.md"])._index.by_name is None  # "*.md" matches at the root only


def test_a_pattern_is_compiled_only_when_a_path_reaches_it() -> None:
    ignore = DockerIgnore([f"dir{i}/sub/*.tmp" for i in range(1000)] + ["**/cache"])
    assert ignore.sent({"dir7/sub/x.tmp": 1, "dir7/sub/x.py": 2, "src/cache": 3, "src/app.py": 4}) == {
        "dir7/sub/x.py": 2,
        "src/app.py": 4,
    }
    assert [p.text for p in ignore.patterns if "regex" in vars(p)] == ["dir7/sub/*.tmp"]


def test_a_100000_line_dockerignore_answers_without_one_giant_regex() -> None:
    # The union of these patterns used to be one RE2 regex, which RE2 refuses ("pattern too large"):
    # four rules failed on the 100,000-line .dockerignore of the reliability bench.
    ignore = DockerIgnore([f"dir{i}/**/*.tmp{i}" for i in range(100_000)])
    files = {"dir7/a/b/x.tmp7": 1, "dir7/x.tmp8": 2, "dir99999/x.tmp99999": 3, "src/app.py": 4}
    assert ignore.sent(files) == {"dir7/x.tmp8": 2, "src/app.py": 4}
    assert excluded_by_each(["dir7/**/*.tmp7", "**/app.py"], files) == {
        "dir7/**/*.tmp7": ["dir7/a/b/x.tmp7"],
        "**/app.py": ["src/app.py"],
    }
