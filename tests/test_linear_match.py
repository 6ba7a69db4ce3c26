"""Globs from a repository are matched in linear time, with the answers the backtracking matcher gave."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_pipelines.engine import linear
from agent_pipelines.engine.lint.ignores import glob_regex
from agent_pipelines.pipelines.docker_optimization.model.copies import _glob_regex
from agent_pipelines.pipelines.docker_optimization.model.dockerignore import (
    FLAVORS,
    DockerIgnore,
    compile_pattern,
    excluded_by_each,
)
from agent_pipelines.pipelines.docker_optimization.rules.context_git import _wildmatch
from tests.conftest import cli, make_repo

# The pattern that backtracks: 14 stars and a final letter the long name lacks.
REDOS_GLOB = "*a" * 14 + "*b"
LONG_NAME = "a" * 3000

pieces = st.sampled_from(
    [
        "a",
        "b",
        "/",
        "*",
        "**",
        "?",
        ".",
        "[ab]",
        "[^a]",
        "[!a]",
        "\\*",
        "-",
        "+",
        "{",
        "(",
        "|",
        ")",
        "[a-c]",
        "\\d",
        "$",
        "^",
        "é",
        "**/",
        "/*",
    ]
)
patterns = st.lists(pieces, min_size=1, max_size=8).map("".join)
paths = st.lists(st.sampled_from(["a", "b", "/", ".", "*", "c", "é", "\n", "ab/", "-"]), max_size=12).map("".join)
flavors = st.sampled_from(FLAVORS)
hypothesis_settings = settings(
    max_examples=400, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def backtracking(compiled) -> re.Pattern[str]:
    """The matcher as it was: Python's re over the same source."""
    return re.compile(compiled.pattern, re.ASCII)


@hypothesis_settings
@given(patterns, paths, flavors)
def test_dockerignore_patterns_match_as_the_backtracking_matcher_did(pattern, path, flavor):
    try:
        compiled = compile_pattern(pattern, flavor)
    except ValueError:
        return  # Docker refuses the pattern; the error path is unchanged
    expected = backtracking(compiled).match(path) is not None
    assert (compiled.match(path) is not None) == expected
    # RE2 itself, even for the patterns kept on Python's re, gives the same answer.
    assert (linear.Re2Pattern(compiled.pattern, re.ASCII).match(path) is not None) == expected


@hypothesis_settings
@given(st.lists(patterns, min_size=1, max_size=5), st.lists(paths, min_size=1, max_size=6))
def test_a_whole_dockerignore_sends_what_one_pattern_at_a_time_says(lines, files):
    try:
        ignore = DockerIgnore(lines)
    except ValueError:
        return
    files = [f for f in files if f and not f.startswith("/")]
    by_union = ignore.sent({f: 1 for f in files})
    assert set(by_union) == {f for f in files if not ignore.excluded(f)}
    each = excluded_by_each([p for p in lines if not p.startswith("!")], files)
    for pattern, excluded in each.items():
        single = DockerIgnore([pattern])
        assert sorted(excluded) == sorted(f for f in files if single.excluded(f))


@hypothesis_settings
@given(patterns, paths)
def test_config_copy_and_gitignore_globs_match_as_before(pattern, path):
    for source_of in (lambda g: glob_regex(g).pattern, lambda g: "^(?:.*/)?" + _wildmatch(g) + "$"):
        try:
            source = source_of(pattern)
            old = re.compile(source, re.DOTALL if "wild" in repr(source_of) else 0)
        except re.error:
            continue
        if path.endswith("\n"):
            continue  # Python's "$" also matches before a final newline; RE2's (and git's) does not
        new = linear.Re2Pattern(old.pattern, old.flags & re.DOTALL)
        assert (new.fullmatch(path) is not None) == (old.fullmatch(path) is not None)
        assert (new.match(path) is not None) == (old.match(path) is not None)
    if "*" in pattern and not path.endswith("\n"):
        copy = _glob_regex(pattern)
        assert (copy.match(path) is not None) == (re.compile(copy.pattern).match(path) is not None)


def test_the_backtracking_glob_goes_to_re2_and_a_simple_one_stays_on_python_re():
    assert isinstance(compile_pattern(REDOS_GLOB), linear.Re2Pattern)
    assert isinstance(compile_pattern("*.pyc"), re.Pattern)
    assert isinstance(compile_pattern("**/node_modules"), re.Pattern)
    assert compile_pattern(REDOS_GLOB).match(LONG_NAME) is None
    assert compile_pattern(REDOS_GLOB).match(LONG_NAME + "b")


def test_undecodable_file_names_are_read_as_go_reads_them():
    name = "a\udcffb"  # a byte that is not UTF-8, as os.fsdecode gives it
    assert compile_pattern("a*?*b").match(name)
    assert compile_pattern("a*?*c").match(name) is None


@pytest.mark.parametrize("where", ["dockerignore", "copy", "pipeline_yaml", "gitignore"])
def test_a_redos_glob_from_the_repository_does_not_hang_the_analysis(tmp_path, where):
    """Each of these ran for hours before (the run was killed after 300 s); checked against the old code."""
    service = LONG_NAME[:200]  # a directory whose long name the glob almost matches
    files = {
        f"{service}/Dockerfile": "FROM python:3.12-slim\nCOPY . /app/\nUSER app\n",
        f"{service}/{service}": "x\n",
        f"{service}/.dockerignore": "*.tmp\n",
    }
    if where == "dockerignore":
        files[f"{service}/.dockerignore"] = f"**/{REDOS_GLOB}\n"
    elif where == "copy":
        files[f"{service}/Dockerfile"] = f"FROM python:3.12-slim\nCOPY {REDOS_GLOB} /app/\nUSER app\n"
    elif where == "pipeline_yaml":
        files[".pipeline.yaml"] = f"per-file-ignores:\n  '**/{REDOS_GLOB}': [SE001]\n"
    else:
        files[".gitignore"] = f"{REDOS_GLOB}\n"
    repo = make_repo(tmp_path / "repo", files)
    # Generous: the linear matcher answers in well under a second; this only catches a hang.
    result = cli("analyze", "--repo", str(repo), "--format", "json", timeout=120)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert report["tool"] == "pipeline-analyze"
    assert report["summary"]["files"] == 1


MULTI_STAGE = """\
FROM python:3.12 AS base
ENV A=1 B=2
WORKDIR /app
RUN rm -f /etc/apt/apt.conf.d/docker-clean
USER builder
RUN echo one
WORKDIR src
FROM base AS build
ENV B=3
RUN echo two
USER app:app
WORKDIR /build
RUN echo three
FROM python:3.12-slim AS final
RUN echo four
ENV C=4
USER 1000
RUN echo five
"""


def test_per_file_indexes_give_what_walking_the_file_gave():
    """USER, WORKDIR, ENV and the docker-clean state before each instruction, from the one-pass indexes,
    are what walking the preceding instructions (the old way, quadratic over a file) says."""
    from agent_pipelines.pipelines.docker_optimization.model.cache_mounts import HOOK_REMOVED, preceding, run_of, script
    from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
    from agent_pipelines.pipelines.docker_optimization.model.shell import workdir_at

    df = Dockerfile.parse("Dockerfile", MULTI_STAGE)
    runs = df.of("RUN")
    assert [i.start_line for i in runs] == [4, 6, 10, 13, 15, 18]
    users = [df.user_at(i) for i in runs]
    assert users == ["root", "builder", "builder", "app", "root", "1000"]  # FROM base runs as base's user
    for ins in runs:
        walked_env, hook = {}, False
        for other in preceding(df, ins):
            if other.cmd == "ENV":
                walked_env.update({k: v for k, v in zip(other.value[::2], other.value[1::2])})
            elif other.cmd == "RUN" and HOOK_REMOVED.search(script(other)):
                hook = True
        run = run_of(df, ins)
        assert {k: v for k, (v, _) in run.env.items()} == walked_env
        assert run.hook_removed == hook
        assert run.root == (df.user_at(ins) == "root")
    assert [workdir_at(df, i) for i in runs] == ["/app", "/app", "/app/src", "/build", "/", "/"]


def test_the_linear_bench_runs_end_to_end(tmp_path, capsys):
    from bench import linear as bench

    bench.main(["--ignore", "50", "--dockerfile", "50", "--files", "200", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    for where in ("dockerignore", "copy", "pipeline.yaml", "gitignore"):
        assert f"{where} " in printed
    assert printed.count(" ok") == 7, printed  # four ReDoS inputs and one size of each series, all analysed
