"""Reliability as measured figures: crash recovery, hostile repositories, mangled input, leaks.

    python -m bench.reliability                  # everything, ~10 minutes on 2 cores
    python -m bench.reliability --modes kill --mangled 50 --workers 4
    python -m bench.reliability --sections attacks --huge-ignore 4000 --huge-dockerfile 4000

Each result is printed as soon as it is known (a line per crash point, hostile
case and attack), the tables at the end. It needs only ``pip install -e .``.

Four measurements, each also asserted by a test (tests/test_reliability_*.py
call the functions below):

crash matrix
    For every node of the docker-optimization graph and both moments (before
    its work, after it but before its checkpoint), ``pipeline run`` on a copy
    of the example repo with ``PIPELINE_CRASH_AT=<node>:<moment>``, the
    process SIGKILLing itself there (``--modes kill``) or raising
    (``raise``), then ``pipeline resume RUN_ID``. Recovered means: resume
    exits 0, the branch's tree equals an uninterrupted run's, every commit
    after the base carries one ``Pipeline-Task`` trailer naming a committed
    change of run.json (no duplicates, no orphans), run.json validates
    against ``RunRecord``'s schema, and the user's checkout (an uncommitted
    edit and an untracked file made before the run) is byte-identical.
hostile repositories
    ``HOSTILE``: each case builds a repository, runs the pipeline on it and
    says whether it was handled (it works, or stops with a one-line error and
    exit 2; and nothing of the user's is lost) and how.
mangled input
    A seeded mangler (byte flips, truncation, deleted/duplicated/swapped
    lines, stray CR/NUL/BOM/non-UTF-8 bytes, unclosed quotes and heredocs,
    deep nesting, alias bombs...) rewrites one Dockerfile or compose file of
    the example, and ``analysis.analyze`` runs on it: an exception out of
    ``analyze``, or more than ``HANG_SECONDS``, is a crash.
attacks
    Secrets: a canary in every Dockerfile, compose and config position
    (``CANARY_FILES``), a run and ``pipeline analyze`` (JSON, SARIF, md), and
    every file they write (run.json, state.sqlite, reports, findings-head.json,
    the outputs) and everything they print grepped for them. ReDoS globs
    (``.dockerignore``, COPY source, ``.pipeline.yaml``) against a long file
    name, and a huge ``.dockerignore`` and Dockerfile, each analyzed within
    ``--limit`` seconds. SIGINT to ``pipeline analyze`` and to ``pipeline run``
    while hadolint lints a huge Dockerfile (expected: exit 130, nothing of its
    process group left, run.json ``interrupted``). ``apply`` while a run is paused
    (expected: refused). run.json's path fields pointed at the user's
    checkouts, then ``rollback`` and ``resume`` (expected: refused in one line,
    checkouts untouched). Each says what happened, pass or not.
leaks
    In-process runs (complete, failed at an injected crash, resumed): child
    processes left, file descriptors left open, sqlite connections left
    open, threads left running.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from agent_pipelines.engine.gitenv import git_env
from agent_pipelines.engine.procs import descendants, group_members, open_fds

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "monorepo"
MOMENTS = ("before", "after")
HANG_SECONDS = 30  # a deep-recursion error can take ~13 s to unwind on a loaded 2-core machine
# The environment of every child run: no Docker engine (figures stay static), no leftover test hooks.
_CLEAN = ("DOCKER_HOST", "PIPELINE_CRASH_AT", "PIPELINE_CRASH_MODE", "PIPELINE_PAUSE_AT")


def progress(line: str) -> None:
    """One result as soon as it is known (``main`` prints them; a crash of the bench loses none)."""
    if _STREAM:
        print(f"- {line}", flush=True)


_STREAM = False


# -- small helpers ---------------------------------------------------------------------------------------


def git(repo: Path, *args: str, check: bool = True) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=check, capture_output=True, text=True, env=git_env()
    ).stdout.strip()


def cli(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """The real ``pipeline`` command in a child process (``python -m engine.cli``)."""
    base = {k: v for k, v in os.environ.items() if k not in _CLEAN}
    full = {**base, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "agent_pipelines.engine.cli", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=timeout,
    )


def run_cli(
    repo: Path, reports: Path, env: dict[str, str] | None = None, *extra: str, timeout: int = 300
) -> subprocess.CompletedProcess:
    return cli(
        "run",
        "docker-optimization",
        "--repo",
        str(repo),
        "--reports-dir",
        str(reports),
        "-q",
        "--builds",
        "off",
        *extra,
        env=env,
        timeout=timeout,
    )


def example(dest: Path) -> Path:
    from agent_pipelines.engine.runs import materialize_example

    return materialize_example(EXAMPLE, dest)


def node_points() -> list[str]:
    """Every node of the docker-optimization graph, in order: ``phase.agent``."""
    from agent_pipelines.engine.graph import node_names
    from agent_pipelines.pipelines.docker_optimization import PIPELINE

    return [phase.node(agent) for phase, agent in node_names(PIPELINE, PIPELINE.phase_names)]


def crash_points() -> list[str]:
    return [f"{node}:{moment}" for node in node_points() for moment in MOMENTS]


def checkout_state(repo: Path) -> dict:
    """What the user would lose: every entry's bytes (a symlink's target, a FIFO as such; .git left out),
    plus HEAD (branch or detached sha), the index and ``git status``."""
    files: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(repo):
        links = [d for d in dirnames if Path(dirpath, d).is_symlink()]
        dirnames[:] = [d for d in dirnames if d != ".git" and d not in links]
        for name in filenames + links:
            full = Path(dirpath) / name
            rel = str(full.relative_to(repo))
            if full.is_symlink():
                files[rel] = ("symlink", os.readlink(full))
            elif full.is_fifo():
                files[rel] = ("fifo",)
            elif full.is_file():
                files[rel] = full.read_bytes()
            else:
                files[rel] = ("other",)
    sha = git(repo, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
    head = git(repo, "symbolic-ref", "--quiet", "HEAD", check=False) or sha
    return {
        "files": files,
        "head": head,
        "head_sha": sha,
        "index": git(repo, "ls-files", "--stage", "-z"),
        "status": git(repo, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignore-submodules=none"),
    }


def state_diff(before: dict, after: dict) -> list[str]:
    problems = [f"{key} changed" for key in ("head", "head_sha", "index", "status") if before[key] != after[key]]
    b, a = before["files"], after["files"]
    problems += [f"{p} removed" for p in sorted(b.keys() - a.keys())]
    problems += [f"{p} appeared" for p in sorted(a.keys() - b.keys())]
    problems += [f"{p} changed" for p in sorted(b.keys() & a.keys()) if b[p] != a[p]]
    return problems


def user_edits(repo: Path) -> None:
    """Work in progress the run must not touch: an uncommitted edit and an untracked file."""
    dockerfile = repo / "services/api/Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "# my uncommitted note\n")
    (repo / "notes.txt").write_text("untracked notes\n")


def tree_of(repo: Path, ref: str) -> str:
    return git(repo, "rev-parse", f"{ref}^{{tree}}")


def load(reports: Path, run_id: str):
    from agent_pipelines.engine.artifacts import RunRecord

    return RunRecord.model_validate_json((reports / run_id / "run.json").read_text(encoding="utf-8"))


def only_run_id(reports: Path) -> str:
    ids = sorted(p.parent.name for p in reports.glob("*/run.json"))
    if len(ids) != 1:
        raise AssertionError(f"expected one run in {reports}, found {ids}")
    return ids[0]


def branch_problems(repo: Path, reports: Path, run_id: str, reference_tree: str | None) -> list[str]:
    """What is wrong with a finished run: its status, schema, tree, commits and trailers."""
    import jsonschema

    from agent_pipelines.engine.artifacts import RunRecord

    problems = []
    document = json.loads((reports / run_id / "run.json").read_text(encoding="utf-8"))
    try:
        jsonschema.validate(document, RunRecord.model_json_schema())
    except jsonschema.ValidationError as err:
        problems.append(f"run.json invalid against the schema: {err.message}")
    record = RunRecord.model_validate(document)
    if record.status != "completed":
        problems.append(f"status {record.status} ({record.error})")
    branch, base = record.run.branch, record.run.base_commit
    if reference_tree is not None and tree_of(repo, branch) != reference_tree:
        problems.append("the branch's tree differs from an uninterrupted run's")
    if record.head_commit and record.head_commit != git(repo, "rev-parse", branch):
        problems.append("run.json's head_commit is not the branch tip")
    log = git(repo, "log", "--format=%H%x1f%(trailers:key=Pipeline-Task,valueonly,separator=%x2c)", f"{base}..{branch}")
    commits = [line.split("\x1f") for line in log.splitlines() if line]
    committed = {c.task_id: c.commit for c in record.changes if c.status.value == "committed"}
    tasks = [task for _, task in commits]
    if len(tasks) != len(set(tasks)):
        problems.append(f"duplicate task trailers: {sorted(t for t in set(tasks) if tasks.count(t) > 1)}")
    for sha, task in commits:
        if not task:
            problems.append(f"orphan commit {sha[:10]}: no Pipeline-Task trailer")
        elif task not in committed:
            problems.append(f"orphan commit {sha[:10]}: task {task} is not a committed change in run.json")
        elif committed[task] != sha:
            problems.append(f"task {task}: run.json says {committed[task][:10]}, the branch has {sha[:10]}")
    missing = sorted(set(committed) - set(tasks))
    if missing:
        problems.append(f"committed in run.json but not on the branch: {missing}")
    return problems


# -- crash matrix ----------------------------------------------------------------------------------------


@dataclass
class CrashResult:
    point: str
    mode: str
    crashed: int  # exit code of the crashed run (-9 when it SIGKILLed itself, 1 when it raised)
    resumed: int | None  # exit code of `pipeline resume`
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def recovered(self) -> bool:
        return self.resumed == 0 and not self.problems


def reference_run(workdir: Path) -> str:
    """The tree of an uninterrupted run on the example (what every recovered run must end with)."""
    repo, reports = example(workdir / "repo"), workdir / "reports"
    done = run_cli(repo, reports)
    if done.returncode != 0:
        raise RuntimeError(f"the uninterrupted reference run failed: {done.stderr[-2000:]}")
    return tree_of(repo, load(reports, only_run_id(reports)).run.branch)


def crash_and_resume(workdir: Path, point: str, mode: str, reference_tree: str) -> CrashResult:
    """One crash point: run with the crash injected, resume, and check what a user would check."""
    started = time.monotonic()
    repo, reports = example(workdir / "repo"), workdir / "reports"
    user_edits(repo)
    before = checkout_state(repo)
    env = {"PIPELINE_CRASH_AT": point, **({"PIPELINE_CRASH_MODE": "kill"} if mode == "kill" else {})}
    crashed = run_cli(repo, reports, env)
    result = CrashResult(point, mode, crashed.returncode, None)
    expected = -signal.SIGKILL if mode == "kill" else 1
    if crashed.returncode != expected:
        result.problems.append(
            f"the crashed run exited {crashed.returncode}, not {expected}: {crashed.stderr.strip()[-300:]}"
        )
        return result
    run_id = only_run_id(reports)
    from agent_pipelines.engine.runs import shown_status

    record = load(reports, run_id)
    status = shown_status(record)  # a killed run: its record says running or interrupted, its process is gone
    if status not in (("stopped (resumable)", "interrupted") if mode == "kill" else ("failed",)):
        result.problems.append(f"after the crash the run shows as {status} (run.json says {record.status})")
    resumed = cli("resume", run_id, "--reports-dir", str(reports), "-q")
    result.resumed = resumed.returncode
    if resumed.returncode != 0:
        result.problems.append(f"resume exited {resumed.returncode}: {resumed.stderr.strip()[-500:]}")
        return result
    result.problems += branch_problems(repo, reports, run_id, reference_tree)
    result.problems += [f"user's checkout: {p}" for p in state_diff(before, checkout_state(repo))]
    result.seconds = time.monotonic() - started
    return result


GIT_LOCKS = ("index.lock", "HEAD.lock", "branch ref lock")


def crash_inside_git(workdir: Path, reference_tree: str, point: str = "compose.implementer:before") -> CrashResult:
    """A SIGKILL in the middle of a git command in the run's worktree (a commit, a reset) leaves git's lock
    files; node boundaries never do, so they are planted here after the kill: resume must still work."""
    started = time.monotonic()
    repo, reports = example(workdir / "repo"), workdir / "reports"
    crashed = run_cli(repo, reports, {"PIPELINE_CRASH_AT": point, "PIPELINE_CRASH_MODE": "kill"})
    result = CrashResult(f"{point} + git's lock files", "kill", crashed.returncode, None)
    run_id = only_run_id(reports)
    run = load(reports, run_id).run
    gitdir = Path(git(Path(run.worktree), "rev-parse", "--absolute-git-dir"))
    common = Path(git(Path(run.worktree), "rev-parse", "--path-format=absolute", "--git-common-dir"))
    for lock in (gitdir / "index.lock", gitdir / "HEAD.lock", common / "refs" / "heads" / f"{run.branch}.lock"):
        lock.write_text("")
    resumed = cli("resume", run_id, "--reports-dir", str(reports), "-q")
    result.resumed = resumed.returncode
    if resumed.returncode != 0:
        result.problems.append(f"resume exited {resumed.returncode}: {resumed.stderr.strip()[-300:]}")
    else:
        result.problems += branch_problems(repo, reports, run_id, reference_tree)
    result.seconds = time.monotonic() - started
    return result


def crash_matrix(
    workdir: Path,
    points: list[str],
    modes: tuple[str, ...] = ("kill",),
    workers: int = 2,
    reference_tree: str | None = None,
) -> list[CrashResult]:
    """Every (point, mode), each on its own copy of the example, ``workers`` at a time."""
    workdir = Path(workdir)
    if reference_tree is None:
        reference_tree = reference_run(workdir / "reference")
    jobs = [(p, m) for m in modes for p in points]

    def one(job: tuple[str, str]) -> CrashResult:
        point, mode = job
        try:
            got = crash_and_resume(workdir / f"{mode}-{point.replace(':', '-')}", point, mode, reference_tree)
        except Exception as err:  # a broken probe is a failed point, not a broken bench
            got = CrashResult(point, mode, 0, None, [f"{type(err).__name__}: {err}"])
        progress(
            f"crash {point} ({mode}): "
            + ("recovered" if got.recovered else "NOT recovered: " + "; ".join(got.problems))
        )
        return got

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, jobs))


# -- hostile repositories --------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one run on a hostile repository did."""

    repo: Path
    reports: Path
    code: int
    stderr: str
    record: object | None = None  # the RunRecord when the run got that far
    extra: dict = field(default_factory=dict)


@dataclass
class HostileResult:
    case: str
    handled: bool
    how: str
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    build: Callable[[Path], tuple[Path, dict]]  # workdir -> (repo, extra facts for check)
    expect: str  # "works" or "stops"
    check: Callable[[Outcome], list[str]] = lambda o: []  # case-specific problems
    run: Callable[[Path, Path], tuple[int, str]] | None = None  # (repo, reports) -> (exit code, stderr)
    timeout: int = 300  # seconds before the run counts as hung


def _commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "--all", "--force")
    git(repo, "commit", "--quiet", "--no-verify", "-m", message)


def _detached(work: Path):
    repo = example(work / "repo")
    git(repo, "checkout", "--quiet", "--detach")
    return repo, {}


def _submodule(work: Path):
    lib = work / "vendored-lib"
    lib.mkdir(parents=True)
    git(lib, "init", "--quiet", "--initial-branch=main")
    (lib / "README.md").write_text("a vendored library\n")
    (lib / "Dockerfile").write_text("FROM alpine:3.19\nCOPY . /lib\n")
    _commit_all(lib, "lib")
    repo = example(work / "repo")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "--quiet", str(lib), "vendor/lib")
    _commit_all(repo, "add a submodule")
    return repo, {}


def _dirty_index(work: Path):
    repo = example(work / "repo")
    (repo / "services/billing/Dockerfile").write_text("FROM python:3.12-slim\n# staged rewrite\n")
    (repo / "services/billing/new_module.py").write_text("STAGED = True\n")
    git(repo, "add", "services/billing")
    (repo / "services/web/src/server.js").write_text("// unstaged edit\n")
    return repo, {}


def _check_dirty_index(o: Outcome) -> list[str]:
    if o.record is None:
        return []
    blob = git(o.repo, "show", f"{o.record.run.branch}:services/billing/Dockerfile")
    new = git(o.repo, "ls-tree", "--name-only", o.record.run.branch, "services/billing/new_module.py")
    problems = ["the staged Dockerfile rewrite leaked into the run's branch"] if "staged rewrite" in blob else []
    return problems + (["the staged new file leaked into the run's branch"] if new else [])


def _pipeline_prefixed_branch(work: Path):
    repo = example(work / "repo")
    git(repo, "branch", "pipeline/experiment")
    return repo, {"tip": git(repo, "rev-parse", "pipeline/experiment")}


def _check_prefixed(o: Outcome) -> list[str]:
    return [] if git(o.repo, "rev-parse", "pipeline/experiment") == o.extra["tip"] else ["pipeline/experiment moved"]


def _branch_named_pipeline(work: Path):
    repo = example(work / "repo")
    git(repo, "branch", "pipeline")
    return repo, {}


FIXED_RUN_ID = "20000101-000000-dead"


def _branch_of_the_run(work: Path):
    repo = example(work / "repo")
    git(repo, "branch", f"pipeline/{FIXED_RUN_ID}")
    return repo, {"tip": git(repo, "rev-parse", f"pipeline/{FIXED_RUN_ID}")}


def run_with_fixed_id(repo: Path, reports: Path, run_id: str = FIXED_RUN_ID) -> tuple[int, str]:
    """``pipeline run`` in this process with ``engine.runs.new_run_id`` returning ``run_id``."""
    from typer.testing import CliRunner

    from agent_pipelines import engine
    from agent_pipelines.engine.cli import app

    saved = engine.runs.new_run_id
    engine.runs.new_run_id = lambda: run_id
    try:
        result = CliRunner().invoke(
            app,
            ["run", "docker-optimization", "--repo", str(repo), "--reports-dir", str(reports), "-q", "--builds", "off"],
        )
    finally:
        engine.runs.new_run_id = saved
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return result.exit_code, stderr


def _check_run_branch(o: Outcome) -> list[str]:
    tip = git(o.repo, "rev-parse", f"pipeline/{FIXED_RUN_ID}")
    return [] if tip == o.extra["tip"] else [f"the existing branch pipeline/{FIXED_RUN_ID} moved"]


def _no_commits(work: Path):
    repo = work / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "--quiet", "--initial-branch=main")
    (repo / "Dockerfile").write_text("FROM python:3.12\nCOPY . .\nRUN pip install -r requirements.txt\n")
    return repo, {}


CAFE = "services/café api"


def _non_ascii(work: Path):
    repo = example(work / "repo")
    shutil.move(repo / "services/web", repo / CAFE)
    compose = repo / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("./services/web", f"./{CAFE}"))
    _commit_all(repo, "a context with a space and a non-ASCII name")
    return repo, {}


def _check_non_ascii(o: Outcome) -> list[str]:
    if o.record is None:
        return []
    files = [f for c in o.record.changes for f in c.files]
    problems = [f"a change lists a C-quoted path: {f}" for f in files if f.startswith('"') or "\\" in f]
    if f"{CAFE}/.dockerignore" not in files:
        problems.append(f"no committed change wrote {CAFE}/.dockerignore")
    problems += [
        f"a task failed that succeeds when the context's name is ASCII: {_short(c.reason)}"
        for c in o.record.changes
        if c.status.value == "failed"
    ]
    gates = [g.name for v in o.record.verdicts for g in v.gates]
    if not any(CAFE in g for g in gates):
        problems.append(f"the reviewer checked nothing in {CAFE} (its COPY-sources gate did not run)")
    return problems


CRLF_FILES = ("services/billing/Dockerfile", "services/worker/Dockerfile", "docker-compose.yml")


def _crlf(work: Path):
    repo = example(work / "repo")
    for rel in CRLF_FILES:
        path = repo / rel
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    _commit_all(repo, "CRLF line endings")
    return repo, {}


def crlf_problems(repo: Path, branch: str, base: str) -> list[str]:
    """Each CRLF file the run changed must still end every line with CRLF (the committed blob's bytes)."""
    problems, newline = [], b"\n"
    for rel in CRLF_FILES:
        blob = subprocess.run(
            ["git", "-C", str(repo), "cat-file", "blob", f"{branch}:{rel}"], check=True, capture_output=True
        ).stdout
        if (
            blob
            == subprocess.run(
                ["git", "-C", str(repo), "cat-file", "blob", f"{base}:{rel}"], check=True, capture_output=True
            ).stdout
        ):
            problems.append(f"{rel}: the run did not change it (the case tests nothing)")
            continue
        bare = blob.count(b"\n") - blob.count(b"\r\n")
        if bare:
            problems.append(f"{rel}: {bare} of {blob.count(newline)} lines lost their CRLF")
    return problems


def _check_crlf(o: Outcome) -> list[str]:
    return crlf_problems(o.repo, o.record.run.branch, o.record.run.base_commit) if o.record else []


def _symlink_outside(work: Path):
    outside = work / "outside"
    outside.mkdir(parents=True)
    repo = example(work / "repo")
    # A Dockerfile the cache fix rewrites, and a .dockerignore the context fix would create: both links out.
    shutil.copy(repo / "services/billing/Dockerfile", outside / "Dockerfile")
    (repo / "services/billing/Dockerfile").unlink()
    os.symlink(outside / "Dockerfile", repo / "services/billing/Dockerfile")
    (outside / "dockerignore").write_text("outside\n")
    os.symlink(outside / "dockerignore", repo / "services/web/.dockerignore")
    os.symlink(outside / "not-yet-there", repo / ".dockerignore")  # dangling: writing it would create it
    _commit_all(repo, "symlinks out of the repository")
    return repo, {"outside": outside, "before": {p.name: p.read_bytes() for p in outside.iterdir()}}


def _check_outside(o: Outcome) -> list[str]:
    outside = o.extra["outside"]
    now = {p.name: p.read_bytes() for p in outside.iterdir()}
    return [] if now == o.extra["before"] else [f"a file outside the repository was written: {sorted(now)}"]


def _huge_binary(work: Path):
    repo = example(work / "repo")
    rng = random.Random(5)
    with open(repo / "services/billing/dump.bin", "wb") as fh:
        for _ in range(50):
            fh.write(rng.randbytes(1 << 20))
    (repo / "services/web/logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.randbytes(4096) + b"\0" * 64)
    (repo / "services/api/app/model.pkl").write_bytes(bytes(range(256)) * 64)
    _commit_all(repo, "a 50 MB dump and binaries in build contexts")
    return repo, {}


def _unreadable(work: Path):
    repo = example(work / "repo")
    os.symlink("does/not/exist", repo / "services/api/requirements-dev.txt")  # dangling, committed
    os.symlink("/nonexistent/config.yml", repo / "services/billing/config.yml")  # dangling, absolute
    _commit_all(repo, "dangling symlinks in build contexts")
    os.mkfifo(repo / "services/billing/events.fifo")  # git can't commit a FIFO: it stays in the checkout
    return repo, {}


def _check_unreadable(o: Outcome) -> list[str]:
    """``pipeline analyze`` reads the checkout itself (FIFO included): it must finish, not block on it."""
    try:
        analyzed = cli("analyze", "--repo", str(o.repo), "--format", "json", "--exit-zero", timeout=60)
    except subprocess.TimeoutExpired:
        return ["pipeline analyze hung on the FIFO"]
    if analyzed.returncode != 0:
        return [f"pipeline analyze exited {analyzed.returncode}: {analyzed.stderr.strip()[-300:]}"]
    return []


def _alias_bomb(work: Path):
    """A compose file whose anchors and aliases expand to 9^9 strings (the "billion laughs")."""
    repo = example(work / "repo")
    bomb = ["x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"] + [
        f"x-{n}: &{chr(98 + n)} [" + ", ".join([f"*{chr(97 + n)}"] * 9) + "]\n" for n in range(8)
    ]
    compose = repo / "docker-compose.yml"
    compose.write_text("".join(bomb) + compose.read_text())
    _commit_all(repo, "an alias bomb in the compose file")
    return repo, {}


def _path_with_spaces(work: Path):
    return example(work / "my repos ünïcode" / "shop"), {}


def _linked_worktree(work: Path):
    main = example(work / "main")
    git(main, "worktree", "add", "--quiet", "-b", "feature", str(work / "feature-wt"))
    return work / "feature-wt", {"main": main, "main_state": checkout_state(main)}


def _check_linked(o: Outcome) -> list[str]:
    return [f"the main checkout: {p}" for p in state_diff(o.extra["main_state"], checkout_state(o.extra["main"]))]


HOSTILE: list[Case] = [
    Case("detached HEAD", "HEAD detached at the tip", _detached, "works"),
    Case("submodule", "a git submodule (vendor/lib) with its own Dockerfile", _submodule, "works"),
    Case(
        "dirty index",
        "staged edits and a staged new file, plus an unstaged edit",
        _dirty_index,
        "works",
        _check_dirty_index,
    ),
    Case(
        "branch pipeline/experiment",
        "a user branch under pipeline/",
        _pipeline_prefixed_branch,
        "works",
        _check_prefixed,
    ),
    Case(
        "branch named pipeline", "a branch `pipeline` (blocks every pipeline/<run-id>)", _branch_named_pipeline, "stops"
    ),
    Case(
        "run's branch exists",
        "the branch the run would create already exists",
        _branch_of_the_run,
        "stops",
        _check_run_branch,
        run_with_fixed_id,
    ),
    Case("no commits", "git init, files, no commit", _no_commits, "stops"),
    Case("non-ASCII, spaces", f"a build context named `{CAFE}`", _non_ascii, "works", _check_non_ascii),
    Case("CRLF", "CRLF line endings in two Dockerfiles and the compose file", _crlf, "works", _check_crlf),
    Case(
        "symlinks out",
        "a Dockerfile and .dockerignores that are symlinks out of the repo",
        _symlink_outside,
        "works",
        _check_outside,
    ),
    Case("huge and binary", "a 50 MB binary and small binaries in build contexts", _huge_binary, "works"),
    Case(
        "unreadable files",
        "dangling symlinks (committed) and a FIFO (in the checkout)",
        _unreadable,
        "works",
        _check_unreadable,
    ),
    Case(
        "YAML alias bomb",
        "compose anchors/aliases that expand to 9^9 nodes (billion laughs)",
        _alias_bomb,
        "works",
        timeout=120,
    ),
    Case("repo path", "the repository under a path with spaces and non-ASCII", _path_with_spaces, "works"),
    Case("linked worktree", "--repo is a linked worktree (git worktree add)", _linked_worktree, "works", _check_linked),
]


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def run_case(case: Case, workdir: Path) -> tuple[HostileResult, Outcome]:
    """Build the case, run the pipeline on it, and judge: handled = the expected outcome, a one-line
    error when it stops, a valid completed run when it works, and nothing of the user's lost."""
    workdir = Path(workdir)
    repo, extra = case.build(workdir)
    reports = workdir / "reports"
    before = checkout_state(repo)
    started = time.monotonic()
    if case.run is not None:
        code, stderr = case.run(repo, reports)
    else:
        try:
            done = run_cli(repo, reports, timeout=case.timeout)
            code, stderr = done.returncode, done.stderr
        except subprocess.TimeoutExpired:
            code, stderr = -1, f"hung: killed after {case.timeout} s"
    seconds = time.monotonic() - started
    outcome = Outcome(repo, reports, code, stderr, extra=extra)
    problems: list[str] = []
    runs = sorted(p.parent.name for p in reports.glob("*/run.json")) if reports.exists() else []
    if code in (0, 4) and runs:  # 4: the run finished, some task failed (listed below)
        outcome.record = load(reports, runs[0])
        problems += branch_problems(repo, reports, runs[0], None)
        failed = [c for c in outcome.record.changes if c.status.value == "failed"]
        how = (
            f"ran in {seconds:.1f} s: {sum(c.status.value == 'committed' for c in outcome.record.changes)} commits"
            + (f", {len(failed)} task(s) failed: " + "; ".join(_short(c.reason) for c in failed) if failed else "")
        )
    elif code == 2:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        how = "stopped (exit 2): " + (lines[0] if lines else "no message")
        if len(lines) != 1 or not lines[0].startswith("error:"):
            problems.append(f"the error is not one line: {stderr.strip()[-500:]}")
    else:
        last = (stderr.strip().splitlines() or ["no message"])[-1]
        how = f"exit {code}: {last}"
        problems.append(f"exit {code}" + (" with a traceback" if "Traceback" in stderr or "╭" in stderr else ""))
    if case.expect == "works" and code not in (0, 4):
        problems.append("expected the run to work")
    if case.expect == "stops" and code != 2:
        problems.append("expected exit 2 with a one-line error")
    problems += [f"user's checkout: {p}" for p in state_diff(before, checkout_state(repo))]
    problems += case.check(outcome)
    how = how.replace(str(repo), "REPO")
    return HostileResult(case.name, not problems, how, [p.replace(str(repo), "REPO") for p in problems]), outcome


def hostile(workdir: Path, cases: list[Case] | None = None, workers: int = 2) -> list[HostileResult]:
    cases = HOSTILE if cases is None else cases
    in_process = [c for c in cases if c.run is not None]  # they patch this process: one at a time, here
    children = [c for c in cases if c.run is None]

    def one(indexed: tuple[int, Case]) -> HostileResult:
        index, case = indexed
        try:
            got = run_case(case, Path(workdir) / f"case{index}")[0]
        except Exception as err:
            got = HostileResult(
                case.name, False, f"the probe failed: {type(err).__name__}: {err}", [traceback.format_exc()]
            )
        progress(f"hostile {case.name}: " + ("handled" if got.handled else "NOT handled") + f" ({got.how})")
        return got

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = dict(zip([c.name for c in children], pool.map(one, enumerate(children))))
    for index, case in enumerate(in_process, start=len(children)):
        results[case.name] = one((index, case))
    return [results[c.name] for c in cases]


# -- mangled input ---------------------------------------------------------------------------------------

DOCKERFILES = (
    "services/api/Dockerfile",
    "services/billing/Dockerfile",
    "services/web/Dockerfile",
    "services/worker/Dockerfile",
)
COMPOSE = "docker-compose.yml"
_KEYWORDS = (
    "FROM",
    "RUN",
    "COPY",
    "ADD",
    "ARG",
    "ENV",
    "WORKDIR",
    "USER",
    "CMD",
    "ENTRYPOINT",
    "HEALTHCHECK",
    "EXPOSE",
    "LABEL",
    "ONBUILD",
    "SHELL",
    "STOPSIGNAL",
    "VOLUME",
    "MAINTAINER",
)
_JUNK = (
    "\\",
    "\\\n",
    "<<EOF",
    "<<-EOF\n",
    "\x00",
    "\r",
    "\ufeff",
    "\u202e",
    "\t",
    "'",
    '"',
    "${",
    "$(",
    "`",
    "--mount=type=cache",
    "--from=",
    "AS",
    "#",
    "# syntax=docker/dockerfile:1",
    "# escape=`",
    "\n\n\n",
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "&anchor ",
    "*anchor",
    "<<: *a",
    "!!python/object",
    "? ",
    "|",
    ">-",
    "0x",
    "1e999",
    "~",
    "null",
    "yes",
    "no",
    "\u00e9",
    "\U0001f433",
    "%YAML 1.1\n",
    "---\n",
    "...\n",
)


OPS = (
    "delete line",
    "repeat line",
    "swap lines",
    "insert junk",
    "truncate",
    "insert instruction",
    "case flip",
    "whitespace",
    "huge line",
    "deep nesting",
    "alias bomb",
    "CRLF",
    "reverse line",
)


def mangle(rng: random.Random, text: str, compose: bool, log: list[str] | None = None) -> str | bytes:
    """One to four random mutations of ``text``; sometimes raw bytes that are not UTF-8 (``log`` gets their names)."""
    lines = text.splitlines(keepends=True) or [""]
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(13)
        if log is not None and (op not in (9, 10) or compose):
            log.append(OPS[op])
        i = rng.randrange(len(lines)) if lines else 0
        if not lines:
            lines = [""]
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i] * rng.randint(1, 50))
        elif op == 2 and len(lines) > 1:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3:
            cut = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:cut] + rng.choice(_JUNK) + lines[i][cut:]
        elif op == 4:
            lines = lines[:i] + [lines[i][: rng.randrange(len(lines[i]) + 1)]]
        elif op == 5:
            lines.insert(i, f"{rng.choice(_KEYWORDS)}{rng.choice(['', ' ', '  '])}{rng.choice(_JUNK)}\n")
        elif op == 6:
            lines[i] = "".join(ch.upper() if rng.random() < 0.5 else ch for ch in lines[i])
        elif op == 7:
            lines[i] = lines[i].replace(" ", rng.choice(["\t", "", "  ", "\u00a0"]))
        elif op == 8:
            lines.insert(i, "x" * rng.choice([1000, 100_000, 1_000_000]) + "\n")
        elif op == 9 and compose:
            depth = rng.choice([50, 500, 5000])
            lines.insert(i, "  " * 2 + "deep: " + "[" * depth + "]" * depth + "\n")
        elif op == 10 and compose:
            lines[:0] = ["x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"] + [
                f"x-{n}: &{chr(98 + n)} [" + ", ".join([f"*{chr(97 + n)}"] * 9) + "]\n" for n in range(8)
            ]
        elif op == 11:
            lines = [line.replace("\n", "\r\n") if rng.random() < 0.5 else line for line in lines]
        else:
            lines[i] = lines[i][::-1]
    out = "".join(lines)
    if rng.random() < 0.1:
        raw = bytearray(out.encode("utf-8", "surrogatepass"))
        for _ in range(rng.randint(1, 8)):
            if raw:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        if log is not None:
            log.append("byte flips")
        return bytes(raw)
    return out


@dataclass
class MangleReport:
    fed: int = 0
    crashes: list[tuple[str, str, str]] = field(default_factory=list)  # (file and mutations, exception, where)
    hangs: list[str] = field(default_factory=list)
    rule_errors: list[str] = field(default_factory=list)  # rules that raised, caught by the analysis (notes)
    saved: list[str] = field(default_factory=list)


class _Hang(BaseException):  # not an Exception: the analysis guards each rule with `except Exception`
    pass


@contextmanager
def _deadline(seconds: int):
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ring(*_):
        raise _Hang()

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def mangled_inputs(workdir: Path, count: int = 200, seed: int = 20240601, keep: Path | None = None) -> MangleReport:
    """Feed ``count`` mangled Dockerfiles and compose files to ``analysis.analyze``; count what escapes."""
    from agent_pipelines.pipelines.docker_optimization import analysis

    root = Path(workdir) / "mangled"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__"))
    originals = {rel: (root / rel).read_text(encoding="utf-8") for rel in (*DOCKERFILES, COMPOSE)}
    rng = random.Random(seed)
    report = MangleReport()
    run_analysis = getattr(analysis, "run_analysis", None)
    for n in range(count):
        rel = COMPOSE if n % 2 else rng.choice(DOCKERFILES)
        ops: list[str] = []
        data = mangle(rng, originals[rel], rel == COMPOSE, ops)
        label = f"{rel} ({', '.join(ops)})"
        target = root / rel
        target.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
        report.fed += 1
        try:
            with _deadline(HANG_SECONDS), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ruamel's ReusedAnchorWarning etc.: noise here
                if run_analysis is not None:
                    result = run_analysis(root)
                    report.rule_errors += [
                        f"{rel}: {note.message}" for note in result.notes if note.kind == "rule-error"
                    ]
                else:
                    analysis.analyze(root)
        except _Hang:
            report.hangs.append(label)
            _save(keep, n, rel, data, report)
        except Exception as err:
            frame = traceback.extract_tb(err.__traceback__)[-1]
            where = f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
            report.crashes.append((label, f"{type(err).__name__}: {str(err)[:120]}", where))
            _save(keep, n, rel, data, report)
        finally:
            target.write_text(originals[rel], encoding="utf-8")
    return report


def _save(keep: Path | None, n: int, rel: str, data: str | bytes, report: MangleReport) -> None:
    if keep is None:
        return
    keep.mkdir(parents=True, exist_ok=True)
    path = keep / f"{n:04d}-{rel.replace('/', '_')}"
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    report.saved.append(str(path))


# -- leaks -----------------------------------------------------------------------------------------------


def live_children() -> list[str]:
    """Every live descendant process of this one (any command), from /proc (the bench needs no pytest)."""
    return list(descendants().values())


@contextmanager
def tracked_sqlite():
    """Every sqlite3 connection opened inside the block, kept so that we can ask, after, if it was closed."""
    opened: list[sqlite3.Connection] = []
    real = sqlite3.connect

    def connect(*args, **kwargs):
        conn = real(*args, **kwargs)
        opened.append(conn)
        return conn

    sqlite3.connect = connect
    try:
        yield opened
    finally:
        sqlite3.connect = real


def still_open(connections: list[sqlite3.Connection]) -> int:
    count = 0
    for conn in connections:
        try:
            conn.total_changes  # noqa: B018 (raises on a closed connection)
        except sqlite3.ProgrammingError:
            continue
        count += 1
    return count


@dataclass
class LeakReport:
    scenario: str
    children: list[str]
    fds: set[str]
    sqlite_open: int
    threads: list[str]

    @property
    def leaks(self) -> int:
        return len(self.children) + len(self.fds) + self.sqlite_open + len(self.threads)

    def describe(self) -> str:
        parts = [
            f"{len(self.children)} child processes",
            f"{len(self.fds)} fds",
            f"{self.sqlite_open} sqlite connections",
            f"{len(self.threads)} threads",
        ]
        return ", ".join(parts) + (
            f" ({sorted(self.fds)[:3]} {self.children[:3]} {self.threads[:3]})" if self.leaks else ""
        )


def measure_leaks(scenario: str, action: Callable[[], object]) -> LeakReport:
    """Run ``action`` in this process and report what it left behind."""
    gc.collect()
    fds_before, threads_before = open_fds(), {t.ident for t in threading.enumerate()}
    with tracked_sqlite() as opened:
        action()
    gc.collect()
    threads = [t.name for t in threading.enumerate() if t.ident not in threads_before and t.is_alive()]
    return LeakReport(scenario, live_children(), open_fds() - fds_before, still_open(opened), threads)


@contextmanager
def environ(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def leak_scenarios(workdir: Path) -> list[LeakReport]:
    """A complete run, a run failed by an injected crash, its resume, and a run stopped by Ctrl-C."""
    from agent_pipelines.engine import graph
    from agent_pipelines.engine.runs import resume_run, start_run
    from agent_pipelines.pipelines.docker_optimization import PIPELINE

    workdir = Path(workdir)
    reports = workdir / "leak-reports"
    warm = example(workdir / "leak-warm")
    start_run(PIPELINE, warm, reports)  # imports, caches, lazily started pools: not leaks
    results = []
    repo = example(workdir / "leak-full")
    results.append(measure_leaks("complete run", lambda: start_run(PIPELINE, repo, reports)))
    failing = example(workdir / "leak-failed")
    box = {}

    def failed_run():
        with environ(PIPELINE_CRASH_AT="compose.reviewer:after"):
            box["record"] = start_run(PIPELINE, failing, reports)

    results.append(measure_leaks("run failed at an injected crash", failed_run))
    record = box["record"]
    results.append(
        measure_leaks(
            "resume of the failed run", lambda: resume_run({PIPELINE.name: PIPELINE}, reports, record.run.run_id)
        )
    )
    interrupted = example(workdir / "leak-interrupted")
    real = graph.crash_point

    def ctrl_c(node: str, when: str) -> None:
        if node == "dockerfiles.reviewer" and when == "before":
            raise KeyboardInterrupt
        real(node, when)

    def interrupted_run():
        graph.crash_point = ctrl_c
        try:
            start_run(PIPELINE, interrupted, reports)
        except KeyboardInterrupt:
            pass
        finally:
            graph.crash_point = real

    results.append(measure_leaks("run stopped by Ctrl-C", interrupted_run))
    return results


# -- secrets: canaries in every position, grepped in every output --------------------------------------

# Each canary is a secret in one position a Dockerfile, a compose file or a config file can hold it.
CANARY_FILES = {
    "Dockerfile": (
        "FROM python:3.12-slim\n"
        "ARG NPM_TOKEN=cnry-arg-0001\n"
        "ARG AWS_ACCESS_KEY_ID=AKIACNRY000000000002\n"
        "ENV API_KEY=cnry-env-0003\n"
        "ENV DB_PASSWORD cnry-legacy-0004\n"
        'ENV CONN="Server=db;User Id=sa;Password=cnry-dsn-0005;"\n'
        "RUN pip install --index-url https://user:cnry-url-0006@pypi.example.com/simple flask\n"
        "RUN curl -u admin:cnry-curl-0007 https://example.com/x\n"
        "ADD https://user:cnry-add-0008@example.com/file.tgz /tmp/\n"
        'RUN echo "//registry.npmjs.org/:_authToken=cnry-npmrc-0009" > /root/.npmrc\n'
        'RUN printf "[pypi]\\npassword = cnry-pypirc-0010\\n" > /root/.pypirc\n'
        'RUN echo "-----BEGIN RSA PRIVATE KEY----- MIIcnry0011 -----END RSA PRIVATE KEY-----" > /k\n'
        "COPY . /app\n"
        'HEALTHCHECK CMD curl -H "Authorization: Bearer cnrybearer0012" http://localhost/\n'
        'CMD ["python", "/app/app.py"]\n'
    ),
    "compose.yaml": (
        "services:\n"
        "  app:\n"
        "    build: .\n"
        "    environment:\n"
        "      - DB_PASSWORD=cnry-list-0013\n"
        "  db:\n"
        "    image: postgres:16\n"
        "    environment:\n"
        "      API_TOKEN: cnry-map-0014\n"
        '      "SECRET_KEY": "cnry-quoted-0015"\n'
        "      DATABASE_URL: postgres://app:cnry-dsnurl-0016@db/app\n"
    ),
    ".npmrc": "//registry.npmjs.org/:_authToken=cnry-npmrcfile-0017\n",
    "app.py": "print('hi')\n",
}
CANARIES = sorted(
    {c for text in CANARY_FILES.values() for c in re.findall(r"cnry[a-z-]*\d{4}|MIIcnry\d{4}|AKIACNRY\d{12}", text)}
)


@dataclass
class CaseResult:
    """One attack case of the bench: passed or not, and what happened, in one line."""

    case: str
    passed: bool
    detail: str
    seconds: float = 0.0


def canary_repo(dest: Path) -> Path:
    """A git repository with a secret in every position ``CANARY_FILES`` names."""
    dest.mkdir(parents=True)
    for rel, text in CANARY_FILES.items():
        (dest / rel).write_text(text, encoding="utf-8")
    git(dest, "init", "-q", "-b", "main")
    _commit_all(dest, "canaries")
    return dest


def leaked_canaries(paths: list[Path], texts: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Which canaries appear, in clear, in which of these files (any bytes: sqlite too) or captured texts."""
    found: dict[str, list[str]] = {}
    blobs = [(str(p), p.read_bytes()) for p in paths if p.is_file()]
    blobs += [(name, text.encode("utf-8", "replace")) for name, text in (texts or {}).items()]
    for name, data in blobs:
        for canary in CANARIES:
            if canary.encode() in data:
                found.setdefault(canary, []).append(name)
    return found


def secrets_grep(workdir: Path) -> tuple[CaseResult, dict[str, list[str]], int]:
    """A pipeline run and ``pipeline analyze`` (json, sarif, md) on the canary repository; every file they write
    and everything they print is grepped for the canaries. Returns the result, the leaks and how many
    outputs held a redaction mark (a canary that was cited and masked, not just never cited)."""
    started = time.monotonic()
    repo, reports = canary_repo(workdir / "repo"), workdir / "reports"
    texts: dict[str, str] = {}
    done = run_cli(repo, reports)
    texts["pipeline run: stdout"], texts["pipeline run: stderr"] = done.stdout, done.stderr
    done = cli(
        "run",
        "docker-optimization",
        "--repo",
        str(repo),
        "--reports-dir",
        str(workdir / "reports-loud"),
        "--builds",
        "off",
    )  # not quiet: the terminal output is grepped too
    texts["pipeline run (loud): stdout"], texts["pipeline run (loud): stderr"] = done.stdout, done.stderr
    outputs = workdir / "analyze"
    outputs.mkdir()
    for fmt in ("json", "sarif", "md"):
        done = cli("analyze", "--repo", str(repo), "--format", fmt)
        (outputs / f"analyze.{fmt}").write_text(done.stdout, encoding="utf-8")
        texts[f"pipeline analyze --format {fmt}: stderr"] = done.stderr
    files = [p for d in (reports, workdir / "reports-loud", outputs) for p in d.rglob("*") if p.is_file()]
    files = [p for p in files if p.name != "redaction.key"]
    leaks = leaked_canaries(files, texts)
    masked = sum(b"__REDACTED_" in p.read_bytes() for p in files)
    where = "; ".join(
        f"{c} in {', '.join(sorted({Path(n).name if '/' in n else n for n in ns}))}" for c, ns in sorted(leaks.items())
    )
    detail = (
        f"{len(CANARIES)} canaries, {len(files)} files + {len(texts)} terminal streams grepped, "
        f"{masked} files hold masks; " + (f"{len(leaks)} leaked: {where}" if leaks else "none leaked")
    )
    return CaseResult("secrets grep", not leaks and masked > 0, detail, time.monotonic() - started), leaks, masked


# -- attacks: ReDoS, huge inputs, Ctrl-C during hadolint, apply during a run, tampered records ------------------

REDOS_GLOB = "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"


def _analyze_within(repo: Path, limit: float) -> tuple[str, float]:
    """``pipeline analyze`` on ``repo`` in a child, killed after ``limit`` s: ('exit N' | 'killed', seconds)."""
    env = {**{k: v for k, v in os.environ.items() if k not in _CLEAN}, "PYTHONPATH": str(ROOT), "PIPELINE_CACHE": "0"}
    started = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "-m", "agent_pipelines.engine.cli", "analyze", "--repo", str(repo), "--format", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    ) as proc:
        try:
            code = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return "killed", time.monotonic() - started
    return f"exit {code}", time.monotonic() - started


def _timed_case(name: str, repo: Path, limit: float) -> CaseResult:
    how, took = _analyze_within(repo, limit)
    passed = how in ("exit 0", "exit 1")  # 1: findings at --fail-on; anything else is a crash or a hang
    return CaseResult(name, passed, f"{how} after {took:.1f} s (limit {limit:.0f} s)", took)


def redos_cases(workdir: Path, limit: float = HANG_SECONDS) -> list[CaseResult]:
    """Globs that backtrack catastrophically in a regex engine that backtracks, against a long file name."""
    long_name = "Dockerfile." + "a" * 200  # no 'b': the glob can't match, after trying every split of the name
    results = []
    for name, files in (
        (
            ".dockerignore pattern " + REDOS_GLOB,
            {".dockerignore": REDOS_GLOB + "\n", "Dockerfile": "FROM alpine:3.20\nCOPY . /app\n"},
        ),
        ("COPY source " + REDOS_GLOB, {"Dockerfile": f"FROM alpine:3.20\nCOPY {REDOS_GLOB} /app/\n"}),
        (
            ".pipeline.yaml ignore glob " + REDOS_GLOB,
            {
                long_name: "FROM alpine:3.20\nCOPY . /app\n",
                ".pipeline.yaml": f'per-file-ignores:\n  "{REDOS_GLOB}": [DF001]\n',
            },
        ),
    ):
        repo = workdir / f"redos-{len(results)}"
        repo.mkdir(parents=True)
        for rel, text in {long_name: "FROM alpine:3.20\n", **files}.items():
            (repo / rel).write_text(text)
        results.append(_timed_case(f"ReDoS: {name}", repo, limit))
    return results


def huge_cases(workdir: Path, ignore_lines: int, dockerfile_lines: int, limit: float) -> list[CaseResult]:
    """A ``.dockerignore`` of ``ignore_lines`` patterns and a Dockerfile of ``dockerfile_lines`` instructions."""
    results = []
    repo = workdir / "huge-ignore"
    repo.mkdir(parents=True)
    (repo / ".dockerignore").write_text("".join(f"dir{i}/**/*.tmp{i}\n" for i in range(ignore_lines)))
    (repo / "Dockerfile").write_text("FROM alpine:3.20\nCOPY . /app\n")
    results.append(_timed_case(f"huge: {ignore_lines:,}-line .dockerignore", repo, limit))
    repo = workdir / "huge-dockerfile"
    repo.mkdir(parents=True)
    (repo / "Dockerfile").write_text(huge_dockerfile(dockerfile_lines))
    results.append(_timed_case(f"huge: {dockerfile_lines:,}-line Dockerfile", repo, limit))
    return results


def huge_dockerfile(lines: int) -> str:
    return "FROM alpine:3.20\n" + "".join(f"RUN echo step {i} > /tmp/f{i % 50}\n" for i in range(lines - 1))


def _popen_run(repo: Path, reports: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    full = {**{k: v for k, v in os.environ.items() if k not in _CLEAN}, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent_pipelines.engine.cli",
            "run",
            "docker-optimization",
            "--repo",
            str(repo),
            "--reports-dir",
            str(reports),
            "-q",
            "--builds",
            "off",
        ],
        env=full,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_sigint_default,
    )


def _wait_for(test: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if test():
            return True
        time.sleep(0.05)
    return False


def _said(done: subprocess.CompletedProcess) -> tuple[str, bool]:
    """What a command said, in one line (a traceback as its last line), and whether it was a traceback."""
    text = done.stderr.strip() or done.stdout.strip()
    if "Traceback" not in text:
        return _short(" ".join(text.split()), 110), False
    lines = [ln.strip(" │╭╰─╮╯┃━") for ln in text.splitlines()]
    return "traceback: " + _short(next((ln for ln in reversed(lines) if ln), ""), 100), True


def _record_status(reports: Path) -> str:
    try:
        return json.loads(next(reports.glob("*/run.json")).read_text()).get("status", "?")
    except (StopIteration, OSError, ValueError):
        return "(no run.json)"


def _sigint_default() -> None:
    """In the child before exec: SIGINT to its default. A bench started with ``&`` from a non-interactive
    shell ignores SIGINT, and an ignored signal stays ignored across exec: Python would never see it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _hadolint_in(pgid: int) -> bool:
    """Whether a hadolint process runs in process group ``pgid``."""
    for pid in group_members(pgid):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "hadolint":
                return True
        except OSError:
            continue
    return False


def sigint_during_hadolint(workdir: Path, lines: int, command: str) -> CaseResult:
    """``pipeline analyze`` or ``pipeline run`` on a repository with a huge Dockerfile, sent SIGINT (to its
    process only, not its group: it must stop hadolint itself) once hadolint is seen running in its group.

    Passing: exit 130 within ``HANG_SECONDS``, nothing of its process group left (hadolint, git), and for a
    run, run.json ``interrupted``. The child starts in its own session with SIGINT at its default."""
    started = time.monotonic()
    repo = workdir / f"sigint-{command}-repo"
    repo.mkdir(parents=True)
    (repo / "Dockerfile").write_text(huge_dockerfile(lines))
    git(repo, "init", "-q", "-b", "main")
    _commit_all(repo, "huge")
    reports = workdir / f"sigint-{command}-reports"
    env = {**{k: v for k, v in os.environ.items() if k not in _CLEAN}, "PYTHONPATH": str(ROOT), "PIPELINE_CACHE": "0"}
    argv = (
        ["analyze", "--repo", str(repo), "--format", "json"]
        if command == "analyze"
        else ["run", "docker-optimization", "--repo", str(repo), "--reports-dir", str(reports), "-q", "--builds", "off"]
    )
    name = f"SIGINT while hadolint runs ({command})"
    with subprocess.Popen(
        [sys.executable, "-m", "agent_pipelines.engine.cli", *argv],
        env=env,
        text=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_sigint_default,
    ) as proc:
        seen = _wait_for(lambda: _hadolint_in(proc.pid) or proc.poll() is not None, 300) and proc.poll() is None
        sent = time.monotonic() - started
        if not seen:
            proc.communicate()
            return CaseResult(name, False, f"hadolint was never seen running (exit {proc.returncode})", sent)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=HANG_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return CaseResult(
                name,
                False,
                f"{lines:,}-line Dockerfile: still running {HANG_SECONDS} s after the signal (then SIGKILLed)",
                time.monotonic() - started,
            )
    stopped = time.monotonic() - started - sent
    _wait_for(lambda: not group_members(proc.pid), 2.0)  # a child killed at the exit may take a moment to go
    left = group_members(proc.pid)
    status = _record_status(reports) if command == "run" else ""
    passed = proc.returncode == 130 and not left and status in ("", "interrupted")
    detail = (
        f"{lines:,}-line Dockerfile, SIGINT {sent:.1f} s after start while hadolint ran: exit {proc.returncode} "
        f"{stopped:.1f} s later, {len(left)} process(es) of its group left"
        + (f", run.json status {status!r}" if status else "")
        + f"; said {_short(' '.join(err.split())) or 'nothing'}"
    )
    return CaseResult(name, passed, detail, time.monotonic() - started)


def apply_during_run(workdir: Path) -> CaseResult:
    """``pipeline apply`` while the run is paused before a reviewer (its implementer has committed):
    expected a refusal (the run is active), the user's branch unmoved."""
    started = time.monotonic()
    repo, reports = example(workdir / "apply-repo"), workdir / "apply-reports"
    reviewer = next(n for n in node_points() if n.endswith(".reviewer"))
    before = checkout_state(repo)
    with _popen_run(repo, reports, {"PIPELINE_PAUSE_AT": f"{reviewer}:60"}) as proc:

        def has_commits() -> bool:
            ids = [p.parent.name for p in reports.glob("*/run.json")]
            return bool(ids) and git(repo, "rev-list", "--count", f"HEAD..pipeline/{ids[0]}", check=False) not in (
                "",
                "0",
            )

        paused = _wait_for(lambda: has_commits() or proc.poll() is not None, 120) and proc.poll() is None
        done = cli("apply", only_run_id(reports), "--reports-dir", str(reports)) if paused else None
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=HANG_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    if done is None:
        return CaseResult(
            "apply during a run",
            False,
            f"the run never paused with commits (exit {proc.returncode})",
            time.monotonic() - started,
        )
    moved = state_diff(before, checkout_state(repo))
    passed = done.returncode != 0 and not moved
    said, _ = _said(done)
    detail = f"paused before {reviewer}; apply exit {done.returncode} ({said}); checkout " + (
        "unchanged" if not moved else "changed: " + ", ".join(moved[:4])
    )
    return CaseResult("apply during a run", passed, detail, time.monotonic() - started)


def tampered_records(workdir: Path) -> list[CaseResult]:
    """run.json's path fields pointed at a checkout of the user's (the run's own repository, or another one),
    then ``rollback`` and ``resume``: expected a refusal in one line, and both checkouts (an uncommitted edit,
    an untracked and an ignored file) byte-identical."""
    repo, reports = example(workdir / "tamper-repo"), workdir / "tamper-reports"
    other = example(workdir / "other-checkout")  # another repository of the user's, never this run's
    done = run_cli(repo, reports)
    if done.returncode != 0:
        return [CaseResult("tampered run.json", False, f"the run itself failed: exit {done.returncode}")]
    run_id = only_run_id(reports)
    record = reports / run_id / "run.json"
    original = record.read_text()
    for checkout in (repo, other):
        user_edits(checkout)
        ignore = checkout / ".gitignore"
        ignore.write_text((ignore.read_text() if ignore.exists() else "") + "local.db\n")
        (checkout / "local.db").write_bytes(b"user data")
    results = []
    for field_name, target in (("worktree", repo), ("worktree", other), ("repo", other), ("run_dir", other)):
        for command in (["rollback", run_id], ["resume", run_id]):
            started = time.monotonic()
            data = json.loads(original)
            data["run"][field_name] = str(target)
            record.write_text(json.dumps(data, indent=2))
            before = {c: checkout_state(c) for c in (repo, other)}
            got = cli(*command, "--reports-dir", str(reports), timeout=300)
            lost = [f"{c.name}: {p}" for c in (repo, other) for p in state_diff(before[c], checkout_state(c))]
            said, crashed = _said(got)
            name = "the run's repository" if target == repo else "another checkout"
            # A tampered path the command would act on must be refused (non-zero, one line, nothing touched).
            # run_dir is never followed (the run's directory is where run.json was read): there the command
            # may go on with the real run, as long as no checkout is touched.
            refused = got.returncode != 0 or field_name == "run_dir"
            results.append(
                CaseResult(
                    f"tampered run.json: {field_name} = {name}, {command[0]}",
                    refused and not crashed and not lost,
                    f"exit {got.returncode} ({said}); checkouts "
                    + ("untouched" if not lost else "changed: " + ", ".join(lost[:4])),
                    time.monotonic() - started,
                )
            )
            record.write_text(original)
    return results


# -- the report ------------------------------------------------------------------------------------------

SECTIONS = ("crash", "hostile", "mangled", "leaks", "attacks")


def attacks(work: Path, args) -> list[CaseResult]:
    """The attack cases, each printed when done: secrets, ReDoS, huge inputs, Ctrl-C, apply, tampering."""
    results: list[CaseResult] = []

    def keep(got: list[CaseResult] | CaseResult) -> None:
        for r in got if isinstance(got, list) else [got]:
            results.append(r)
            progress(f"{r.case}: {'pass' if r.passed else 'FAIL'} ({r.detail}; {r.seconds:.1f} s)")

    for name, probe in (
        ("secrets grep", lambda: secrets_grep(work / "secrets")[0]),
        ("ReDoS", lambda: redos_cases(work / "redos", args.limit)),
        ("huge inputs", lambda: huge_cases(work / "huge", args.huge_ignore, args.huge_dockerfile, args.limit)),
        (
            "SIGINT while hadolint runs (analyze)",
            lambda: sigint_during_hadolint(work / "sigint", args.huge_dockerfile, "analyze"),
        ),
        (
            "SIGINT while hadolint runs (run)",
            lambda: sigint_during_hadolint(work / "sigint", args.huge_dockerfile, "run"),
        ),
        ("apply during a run", lambda: apply_during_run(work / "apply")),
        ("tampered run.json", lambda: tampered_records(work / "tamper")),
    ):
        try:
            keep(probe())
        except Exception as err:  # a broken probe is a failed case, not a lost bench
            keep(CaseResult(name, False, f"the probe failed: {type(err).__name__}: {err}"))
    return results


def main(argv: list[str] | None = None) -> int:
    global _STREAM
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="kill,raise", help="crash modes: kill (SIGKILL), raise (exception)")
    parser.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    parser.add_argument("--mangled", type=int, default=200, help="mangled inputs to feed the analysis")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--keep", type=Path, default=None, help="save crashing mangled inputs here")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"which to run, of {', '.join(SECTIONS)}")
    parser.add_argument(
        "--limit",
        type=float,
        default=HANG_SECONDS,
        help="seconds an analysis may take on a ReDoS or huge input before it counts as hung",
    )
    parser.add_argument("--huge-ignore", type=int, default=100_000, help="lines of the huge .dockerignore")
    parser.add_argument(
        "--huge-dockerfile",
        type=int,
        default=50_000,
        help="lines of the huge Dockerfile (also the one Ctrl-C'd while hadolint runs)",
    )
    args = parser.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    for name in _CLEAN:
        os.environ.pop(name, None)
    _STREAM = True
    modes = tuple(m for m in args.modes.split(",") if m)
    started = time.monotonic()
    rows: list[str] = []
    failed: list[CrashResult] = []
    cases: list[HostileResult] = []
    mangled, leaks, attacked = None, [], []
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        work = Path(tmp)
        command = " ".join(["python -m bench.reliability", *(argv if argv is not None else sys.argv[1:])])
        print(f"# Reliability, {datetime.now():%Y-%m-%d %H:%M}: `{command}`\n", flush=True)
        if "crash" in sections:
            points = crash_points()
            t0 = time.monotonic()
            reference = reference_run(work / "reference")
            crashes = crash_matrix(work / "crash", points, modes, args.workers, reference)
            inside_git = crash_inside_git(work / "inside-git", reference)
            progress("crash inside a git command: " + ("recovered" if inside_git.recovered else "NOT recovered"))
            crash_s = time.monotonic() - t0
            for mode in modes:
                got = [r for r in crashes if r.mode == mode]
                label = {"kill": "crash points, SIGKILL", "raise": "crash points, exception"}.get(mode, mode)
                rows.append(
                    f"| {label} ({len(points) // 2} nodes × before/after) | {len(got)} | "
                    f"{sum(r.recovered for r in got)} recovered | {crash_s:.0f} s (all modes) |"
                )
            rows.append(
                f"| SIGKILL inside a git command (its lock files left) | 1 | {int(inside_git.recovered)} recovered | |"
            )
            failed = [r for r in [*crashes, inside_git] if not r.recovered]
        if "hostile" in sections:
            t0 = time.monotonic()
            cases = hostile(work / "hostile", workers=args.workers)
            rows.append(
                f"| hostile repositories | {len(cases)} | {sum(c.handled for c in cases)} handled | "
                f"{time.monotonic() - t0:.0f} s |"
            )
        if "mangled" in sections:
            t0 = time.monotonic()
            mangled = mangled_inputs(work, args.mangled, args.seed, args.keep)
            rows.append(
                f"| mangled Dockerfiles/compose files | {mangled.fed} | {len(mangled.crashes)} crashes, "
                f"{len(mangled.hangs)} hangs (> {HANG_SECONDS} s), {len(mangled.rule_errors)} rule errors "
                f"caught | {time.monotonic() - t0:.0f} s |"
            )
            progress(rows[-1].strip("| "))
        if "leaks" in sections:
            t0 = time.monotonic()
            leaks = leak_scenarios(work / "leaks")
            rows.append(
                f"| leak checks (in-process runs) | {len(leaks)} | {sum(r.leaks for r in leaks)} leaks found | "
                f"{time.monotonic() - t0:.0f} s |"
            )
            progress(rows[-1].strip("| "))
        if "attacks" in sections:
            t0 = time.monotonic()
            attacked = attacks(work / "attacks", args)
            rows.append(
                f"| attacks (secrets, ReDoS, huge inputs, Ctrl-C during hadolint, apply during a run, tampered "
                f"records) | {len(attacked)} | {sum(r.passed for r in attacked)} passed | "
                f"{time.monotonic() - t0:.0f} s |"
            )

    print()
    print("| measure | tried | result | time |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    if cases:
        print()
        print("| hostile case | handled | how |")
        print("|---|---|---|")
        for r in cases:
            how = r.how + ("" if r.handled else " — " + "; ".join(r.problems))
            print(f"| {r.case} | {'yes' if r.handled else 'no'} | {how.replace('|', '/')} |")
    if attacked:
        print()
        print("| attack | result | what happened | time |")
        print("|---|---|---|---|")
        for r in attacked:
            print(f"| {r.case} | {'pass' if r.passed else 'FAIL'} | {r.detail.replace('|', '/')} | {r.seconds:.1f} s |")
    if failed:
        print("\nCrash points not recovered:")
        for r in failed:
            print(f"- {r.point} ({r.mode}): {'; '.join(r.problems)}")
    if mangled is not None and (mangled.crashes or mangled.hangs):
        print("\nMangled inputs that crashed or hung the analysis:")
        seen = {}
        for rel, what, where in mangled.crashes:
            seen.setdefault((what.split(":")[0], where), []).append(rel)
        for (what, where), files in seen.items():
            print(f"- {what} at {where} ({len(files)}×, e.g. {files[0]})")
        for rel in mangled.hangs:
            print(f"- hang on {rel}")
    if mangled is not None and mangled.rule_errors:
        print("\nRules that raised on mangled input (the analysis caught it and went on):")
        for line in sorted(set(mangled.rule_errors)):
            print(f"- {line[:300]}")
    if leaks:
        print()
        print("| leak scenario | left behind |")
        print("|---|---|")
        for r in leaks:
            print(f"| {r.scenario} | {r.describe()} |")
    print(f"\nTotal {time.monotonic() - started:.0f} s on {os.cpu_count()} CPUs, {args.workers} workers.", flush=True)
    ok = (
        not failed
        and all(c.handled for c in cases)
        and (mangled is None or not (mangled.crashes or mangled.hangs))
        and not any(r.leaks for r in leaks)
        and all(r.passed for r in attacked)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
