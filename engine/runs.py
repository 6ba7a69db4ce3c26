"""Runs: the run directory, starting a run, resuming it, re-running a phase.

``reports/<run-id>/`` holds ``run.json`` (the RunRecord), ``state.sqlite``
(LangGraph checkpoints, thread id = run id), one markdown report per phase
and ``summary.md``. The graph is rebuilt on every invocation; the checkpoints
say where it stands, and are the one source of the run's state: run.json and
the reports are projections of them (``RunRecord.project``), rewritten after
every node and by ``pipeline rollback``, which writes through the graph.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from agent_pipelines.engine.artifacts import (
    RECORD_SCHEMA,
    ChangeStatus,
    Invocation,
    PhaseReport,
    RunContext,
    RunRecord,
    RunState,
    now,
)
from agent_pipelines.engine.gitenv import git_env, reading_env
from agent_pipelines.engine.lock import Locked, RepoLock
from agent_pipelines.engine.spec import PipelineSpec
from agent_pipelines.engine.workspace import (
    RUN_ID,
    RepoError,
    Workspace,
    git_common_dir,
    validate_repo,
    verify_own_worktree,
)

if TYPE_CHECKING:
    from agent_pipelines.engine.redact import Redactor


class UsageError(Exception):
    """Unusable arguments or target; the CLI prints the message and exits 2."""


Events = Callable[..., None]


def _quiet(*_a, **_k) -> None:
    return None


def new_run_id() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def state_db(self) -> Path:
        return self.root / "state.sqlite"

    @property
    def summary(self) -> Path:
        return self.root / "summary.md"

    def phase_report(self, index: int, phase: str) -> Path:
        return self.root / f"{index}-{phase}.md"


def write_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a temp file renamed over it, removed when the write fails.

    A full disk (ENOSPC) or a denied directory (EACCES) then leaves the previous file as it was and no
    ``.tmp`` behind, so the run resumes from it once the cause is gone.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_record(record: RunRecord, path: Path, redactor=None, store=None) -> None:
    """Write run.json atomically: a reader never sees half a file; with ``redactor``, no secret in it.
    With a shared ``store`` (engine.store), the same text is the run's row there too."""
    record.updated = now()
    text = record.model_dump_json(indent=2) if redactor is None else _scrubbed_json(record, str(path), redactor)
    write_atomic(path, text + "\n")
    if store is not None:
        store.put(record.run.run_id, text)


@dataclass
class _Saved:
    """What the last save of one run.json made of each part of the record, for the redactor that scrubbed it."""

    file: str
    redactor: object
    fields: dict[str, tuple[str, str]]  # field -> (its JSON as pydantic writes it, its text in run.json)
    items: dict[str, dict[str, str]]  # list field -> {an element's compact JSON: its text in run.json}


_SAVED: _Saved | None = None  # one run.json at a time: the one being written after every node


def _scrubbed_json(record: RunRecord, file: str, redactor: Redactor) -> str:
    """``json.dumps(redactor.scrub(json.loads(record.model_dump_json())), indent=2, ensure_ascii=False)``, with only
    what changed since the last save of ``file`` scrubbed and encoded again.

    Why: run.json is written after every node and is mostly the same findings, plan and verdicts again (1.3 MB
    on a large monorepo); scrubbing walks every string in Python, and the indenting encoder is pure Python.
    How: a field whose JSON is what it was keeps its text; in a list that changed, an element whose compact JSON
    was there before keeps its text. The redactor scrubs a string the same way every time (memoized), so a
    kept text is the text a full scrub would give; a new redactor (a resume) starts afresh.
    """
    global _SAVED
    saved = _SAVED
    if saved is None or saved.file != file or saved.redactor is not redactor:
        saved = _SAVED = _Saved(file, redactor, {}, {})
    pieces = []
    model = type(record)
    for name in [*model.model_fields, *model.model_computed_fields]:
        raw = record.model_dump_json(include={name})
        kept = saved.fields.get(name)
        if kept is None or kept[0] != raw:
            value = json.loads(raw)
            if name not in value:  # a field pydantic leaves out of the JSON
                continue
            kept = saved.fields[name] = (
                raw,
                f"  {json.dumps(name, ensure_ascii=False)}: " + _encoded(saved, name, value[name], redactor),
            )
        pieces.append(kept[1])
    return "{\n" + ",\n".join(pieces) + "\n}" if pieces else "{}"


def _encoded(saved: _Saved, name: str, value: object, redactor: Redactor) -> str:
    """``value`` scrubbed and encoded as ``json.dumps(..., indent=2)`` writes it one level in; a list's elements
    reused from the last save when their compact JSON is the same (a newline only ever occurs between tokens,
    since JSON escapes it in strings, so indenting is adding spaces after each)."""
    if not isinstance(value, list) or not value:
        saved.items.pop(name, None)
        return json.dumps(redactor.scrub(value), indent=2, ensure_ascii=False).replace("\n", "\n  ")
    before = saved.items.get(name, {})
    current: dict[str, str] = {}
    texts = []
    for item in value:
        compact = json.dumps(item, ensure_ascii=False)  # the C encoder: what changed (True is not 1 here)
        text = current.get(compact) or before.get(compact)
        if text is None:
            text = json.dumps(redactor.scrub(item), indent=2, ensure_ascii=False).replace("\n", "\n    ")
        current[compact] = text
        texts.append(text)
    saved.items[name] = current
    return "[\n    " + ",\n    ".join(texts) + "\n  ]"


def load_record(reports_dir: Path | None, run_id: str, store=None) -> tuple[RunRecord, RunPaths]:
    """A run's record and paths; ``reports_dir`` None: wherever the run index says the run is."""
    from agent_pipelines.engine.places import find_run_dir

    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise UsageError(f"{run_id!r} is not a run id; `pipeline list` shows the runs")
    if store is not None and store.remote:
        from agent_pipelines.engine.store import shown

        paths = RunPaths(find_run_dir(run_id, reports_dir)[0])  # this machine's copy of its reports, if any
        text = store.get(run_id) if RUN_ID.fullmatch(run_id) else None
        if text is None:
            raise UsageError(
                f"no run {run_id!r} in {shown(store.url)}; `pipeline list --state ...` shows the runs there"
            )
        try:
            return RunRecord.model_validate_json(text), paths
        except ValueError as err:
            raise UsageError(
                f"run {run_id} in {shown(store.url)} is not a valid run record ({str(err).splitlines()[0]})"
            ) from None
    run_dir, where = find_run_dir(run_id, reports_dir)
    paths = RunPaths(run_dir)
    if not paths.run_json.is_file():
        listing = f"`pipeline list --reports-dir {reports_dir}`" if reports_dir is not None else "`pipeline list`"
        raise UsageError(f"no run {run_id!r} {where}; {listing} shows the runs")
    try:
        return RunRecord.model_validate_json(paths.run_json.read_text(encoding="utf-8")), paths
    except ValueError as err:
        raise UsageError(f"{paths.run_json} is not a valid run record ({str(err).splitlines()[0]})") from None


def check_schema(record: RunRecord) -> None:
    """Refuse (UsageError, one line) a run recorded by an earlier layout of the run's state: its checkpoints
    can't be read as this version's state, so it can't be resumed or rolled back (``show`` and ``apply`` still work)."""
    if record.schema_version != RECORD_SCHEMA:
        raise UsageError(
            f"run {record.run.run_id} was recorded by another version of the pipeline (run.json "
            f"schema {record.schema_version}, this one writes {RECORD_SCHEMA}); it can't be resumed or "
            f"rolled back: start a new run"
        )


def verify_record(record: RunRecord, paths: RunPaths) -> Path:
    """Refuse (UsageError, one line) a record that does not point at its run's own worktree; the repository root.

    Called before any command touches the worktree (resume, rollback, apply): see
    ``engine.workspace.verify_own_worktree``. The record's ``run_dir`` is not trusted either: the run's
    directory is where the record was read from.
    """
    run = record.run
    if run.run_id != paths.root.name:
        raise UsageError(
            f"{paths.run_json} names run {run.run_id!r}, not {paths.root.name!r}; "
            f"the record was altered, so nothing was touched"
        )
    if not Path(run.repo).is_dir():
        raise UsageError(
            f"run {run.run_id}'s repository {run.repo} is gone (moved or deleted); move it back there "
            f"to continue, or `pipeline prune --force` forgets the run"
        )
    try:
        root = verify_own_worktree(Path(run.repo), run.run_id, run.worktree, run.branch)
    except RepoError as err:
        raise UsageError(str(err)) from None
    record.run = run.model_copy(update={"run_dir": str(paths.root), "repo": str(root)})
    return root


def claim(record: RunRecord) -> None:
    """Record this process as the run's: `list` and `show` tell from it whether the run is still going."""
    from agent_pipelines.engine.procs import start_token

    record.pid, record.pid_started = os.getpid(), start_token(os.getpid())


def shown_status(record: RunRecord) -> str:
    """The status to show: a run whose record says running (or interrupted) is `running` while its process
    lives, and `stopped (resumable)` once it is gone (SIGKILL, power loss) however the record was left.
    A run that completed with failed tasks says how many: `completed, 2 failed` (its exit code was 1)."""
    if record.status == "completed":
        failed = sum(c.status is ChangeStatus.failed for c in record.changes)
        return f"completed, {failed} failed" if failed else "completed"
    if record.status not in ("running", "interrupted"):
        return record.status
    from agent_pipelines.engine.procs import alive

    if record.pid and alive(record.pid, record.pid_started):
        return "running"
    return "stopped (resumable)" if record.status == "running" else record.status


def list_records(reports_dir: Path | None, store=None) -> list[RunRecord]:
    """The runs in ``reports_dir``, or (None) every run this user started, across repositories (the index);
    with a shared store, the runs it holds."""
    from agent_pipelines.engine.places import run_dirs

    if store is not None and store.remote:
        records = []
        for text in store.records():
            try:
                records.append(RunRecord.model_validate_json(text))
            except ValueError:
                continue
        return records
    records = []
    for run_dir in run_dirs(reports_dir):
        try:
            record = RunRecord.model_validate_json((run_dir / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        record.run = record.run.model_copy(update={"run_dir": str(run_dir)})  # where it is, not where it was
        records.append(record)
    return records


def materialize_example(example: Path, dest: Path) -> Path:
    """Copy the pipeline's bundled example into a fresh git repository with one commit."""
    shutil.copytree(example, dest, ignore=shutil.ignore_patterns("__pycache__"))
    env = git_env()
    for args in (
        ["init", "--quiet", "--initial-branch=main"],
        ["add", "--all", "--force"],
        ["commit", "--quiet", "--no-verify", "-m", "Example monorepo, as found"],
    ):
        subprocess.run(["git", "-C", str(dest), *args], check=True, capture_output=True, env=env)
    return dest


def select_phases(spec: PipelineSpec, requested: list[str] | None) -> list[str]:
    if not requested:
        return spec.phase_names
    unknown = [p for p in requested if p not in spec.phase_names]
    if unknown:
        raise UsageError(f"unknown phase(s) {', '.join(unknown)}; {spec.name} has: {', '.join(spec.phase_names)}")
    first = spec.phase_names[0]
    wanted = set(requested) | {first}  # later phases work from the first phase's findings and plan
    return [p for p in spec.phase_names if p in wanted]


def check_llm_options(options: dict[str, str] | None) -> None:
    """LLM options that can't work (no key, a --max-cost without a price) are refused before anything starts."""
    if not options or options.get("llm") != "1":
        return
    from agent_pipelines.engine.llm import LLMConfig, LLMSetupError

    try:
        LLMConfig.from_options(options)
    except LLMSetupError as err:
        raise UsageError(str(err)) from None


def start_run(
    spec: PipelineSpec,
    repo: Path | None,
    reports_dir: Path | None,
    phases: list[str] | None = None,
    options: dict[str, str] | None = None,
    on_event: Events = _quiet,
    state: str | None = None,
) -> RunRecord:
    """Start a run (``reports_dir`` None: the default, ``engine.places``; ``state``: where its state lives,
    engine.store: a postgresql:// URL, default the local files). Every argument is checked before anything
    is made: a refused run leaves no directory, branch or worktree."""
    with open_store(state) as store:
        return _start_run(spec, repo, reports_dir, phases, options, on_event, store)


def open_store(state: str | None):
    """The state store ``--state``/``PIPELINE_STATE_URL`` names (engine.store); a URL it can't use is a UsageError."""
    from agent_pipelines.engine import store

    try:
        return store.open_store(state)
    except store.StoreError as err:
        raise UsageError(str(err)) from None


def _start_run(spec, repo, reports_dir, phases, options, on_event, store) -> RunRecord:
    chosen = select_phases(spec, phases)
    check_llm_options(options)
    if repo is None and spec.example is None:
        raise UsageError(f"{spec.name} has no bundled example; pass --repo PATH")
    if repo is not None:
        try:
            repo = validate_repo(repo)
        except RepoError as err:
            raise UsageError(str(err)) from None
    run_id = new_run_id()
    while not store.reserve(run_id, spec.name):  # one shared database, many machines: each id is taken once
        run_id = new_run_id()
    try:
        return _reserved_start(spec, repo, reports_dir, chosen, options, on_event, store, run_id)
    except UsageError:
        store.release(run_id)  # nothing started: the reservation goes (a saved record stays)
        raise


def _reserved_start(spec, repo, reports_dir, chosen, options, on_event, store, run_id) -> RunRecord:
    from agent_pipelines.engine.places import default_reports_dir

    paths = RunPaths(Path(reports_dir if reports_dir is not None else default_reports_dir()).resolve() / run_id)
    if repo is None:
        paths.root.mkdir(parents=True)
        try:
            repo = materialize_example(spec.example, paths.root / "example-repo")
        except BaseException:  # interrupted or failed while copying: no half example left behind
            shutil.rmtree(paths.root, ignore_errors=True)
            raise
        on_event("example", repo=str(repo))
    try:
        root = validate_repo(repo)
    except RepoError as err:
        raise UsageError(str(err)) from None
    try:
        lock = _lock(root, run_id)
    except BaseException:
        shutil.rmtree(paths.root, ignore_errors=True)  # the example's copy, when one was made: no run, no debris
        raise
    try:
        return _start(spec, root, run_id, paths, chosen, options, on_event, store)
    except BaseException:
        if not paths.run_json.exists():  # stopped before the run's record: nothing to list or resume, so no debris
            shutil.rmtree(paths.root, ignore_errors=True)
        raise
    finally:
        lock.release()


def _lock(repo: Path, run_id: str) -> RepoLock:
    try:
        return RepoLock(git_common_dir(repo) / "pipeline.lock", run_id).acquire()
    except Locked as err:
        raise UsageError(str(err)) from None


START_POINT = "start.workspace"  # fault-injection point between the run's record and its worktree


def _start(spec, root, run_id, paths, chosen, options, on_event, store=None) -> RunRecord:
    paths.root.mkdir(parents=True, exist_ok=True)
    base = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True, text=True, env=git_env()
    ).stdout.strip()
    worktree, branch = Workspace.location(root, run_id)
    ctx = RunContext(
        run_id=run_id,
        pipeline=spec.name,
        repo=str(root),
        worktree=str(worktree),
        branch=branch,
        base_commit=base,
        run_dir=str(paths.root),
        phases=chosen,
        options=options or {},
        uncommitted=uncommitted(root),
    )
    on_event("base", statement=ctx.base_statement)
    record = RunRecord(
        run=ctx,
        phases=[PhaseReport(phase=p.name, title=p.title) for p in spec.phases if p.name in chosen],
        status="interrupted",
        error="stopped before it started; `pipeline resume` runs it",
    )
    claim(record)
    # The record first: a run killed from here on is listed and resumable, never a branch nobody knows about.
    # It says `interrupted` until the run is under way: a kill at any moment never leaves it "running".
    save_record(record, paths.run_json, store=store)
    from agent_pipelines.engine.places import index_run

    index_run(run_id, paths.root)
    on_event("started", run_id=run_id, run_dir=str(paths.root))
    from agent_pipelines.engine.graph import crash_point

    crash_point(START_POINT, "before")
    try:
        with Workspace.create(root, run_id, base):
            pass
    except RepoError as err:
        paths.run_json.unlink(missing_ok=True)  # nothing was made in the repository: no run to list
        if store is not None:
            store.delete(run_id)
        from agent_pipelines.engine.places import unindex

        unindex(run_id)
        shutil.rmtree(paths.root, ignore_errors=True)
        raise UsageError(str(err)) from None
    return Runner(spec, record, paths, on_event, store).execute("run", initial_state(record))


def uncommitted(root: Path) -> list[str]:
    """Tracked paths whose checkout differs from HEAD (staged or not): the run works on HEAD without them."""
    out = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain=v1", "-z", "--untracked-files=no"],
        check=True,
        capture_output=True,
        text=True,
        env=reading_env(),
    ).stdout
    paths, entries = [], iter(out.split("\0"))
    for entry in entries:
        if not entry:
            continue
        if entry[0] in "RC":
            next(entries, None)  # a rename's second path is its source
        paths.append(entry[3:])
    return sorted(paths)


def initial_state(record: RunRecord) -> RunState:
    """The graph's input for a run's first step: the run's phases, pending, on its base commit."""
    return RunState(phases=record.phases, head_commit=record.run.base_commit)


def resume_run(
    pipelines: dict[str, PipelineSpec],
    reports_dir: Path | None,
    run_id: str,
    phase: str | None = None,
    on_event: Events = _quiet,
    options: dict[str, str] | None = None,
    no_cache: bool = False,
    state: str | None = None,
    repo: Path | None = None,
    decisions: dict | None = None,
) -> RunRecord:
    """Continue a run; ``options`` override the run's own (e.g. a higher --max-cost).

    ``decisions``: a person's review of a run awaiting it (``{"approve": [task ids], "reject": {task id: reason}}``).

    ``no_cache`` drops the model answers cached so far (moved to ``llm-cache/dropped/``): the model is asked again.
    ``state``: where the run's state lives (engine.store). ``repo``: a clone on this machine to continue a run
    that started elsewhere (see :func:`adopt`).
    """
    with open_store(state) as store:
        return _resume_run(pipelines, reports_dir, run_id, phase, on_event, options, no_cache, store, repo, decisions)


def _resume_run(
    pipelines, reports_dir, run_id, phase, on_event, options, no_cache, store, repo, decisions=None
) -> RunRecord:
    record, paths = load_record(reports_dir, run_id, store)
    check_schema(record)
    if options:
        record.run = record.run.model_copy(update={"options": {**record.run.options, **options}})
    check_llm_options(record.run.options)
    spec = pipelines.get(record.run.pipeline)
    if spec is None:
        raise UsageError(f"run {run_id} used pipeline {record.run.pipeline!r}, which is not installed here")
    if phase is not None and phase not in record.run.phases:
        raise UsageError(f"run {run_id} has no phase {phase!r}; its phases are: {', '.join(record.run.phases)}")
    locate(record, paths, repo, store)
    verify_record(record, paths)
    # every check passed: only now is anything made or moved
    paths.root.mkdir(parents=True, exist_ok=True)  # a run from the shared store gets its reports here
    lock = _lock(Path(record.run.repo), run_id)
    try:
        if no_cache:
            drop_cache(paths.root / "llm-cache")
        runner = Runner(spec, record, paths, on_event, store)
        runner.decisions = decisions
        return runner.execute("resume", None, from_phase=phase)
    finally:
        lock.release()


def locate(record: RunRecord, paths: RunPaths, repo: Path | None, store=None) -> None:
    """Where a command works on the run: the clone ``repo`` given (``--repo``, see :func:`adopt`), else the
    repository the run names; a run from a shared store whose repository is not on this machine is refused
    (UsageError, one line) with the ``--repo`` that works on it here."""
    if repo is not None:
        adopt(record, paths, repo)
    elif store is not None and store.remote and not Path(record.run.repo).is_dir():
        raise UsageError(
            f"run {record.run.run_id}'s repository {record.run.repo} is not on this machine; give --repo with a "
            f"clone here (the run's branch {record.run.branch} pushed to its origin)"
        )


def adopt(record: RunRecord, paths: RunPaths, repo: Path) -> None:
    """Continue here, in the clone ``repo``, a run that started on another machine (or in another clone).

    What: the run's branch is fetched from the clone's ``origin`` when the clone lacks it, and the record is
    pointed at this clone's worktree location (re-created from the branch when the run resumes).
    Why: the commits are the work; the checkpoint says where the graph stands, and the implementer reuses
    the commits the branch holds (their ``Pipeline-Task`` trailers), so nothing already done is done again.
    Example: CI ran `pipeline run ... --state postgresql://...` and pushed ``pipeline/<run-id>``; on a laptop,
    `git clone URL r && pipeline resume RUN_ID --state postgresql://... --repo r` continues it.
    Instead: without a pushed branch, resume where the run started.
    """
    try:
        root = validate_repo(repo)
    except RepoError as err:
        raise UsageError(str(err)) from None
    run = record.run
    worktree, branch = Workspace.location(root, run.run_id)
    has = ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"]
    if subprocess.run(has, capture_output=True, env=git_env(), check=False).returncode != 0:
        fetched = subprocess.run(
            ["git", "-C", str(root), "fetch", "--quiet", "origin", f"refs/heads/{branch}:refs/heads/{branch}"],
            capture_output=True,
            text=True,
            env=git_env(),
            check=False,
        )
        if fetched.returncode != 0 and any(c.commit for c in record.changes):
            reason = (fetched.stderr.strip().splitlines() or ["git fetch failed"])[-1]
            raise UsageError(
                f"run {run.run_id} committed work on {branch}, which {root} can't fetch from origin "
                f"({reason}); push the branch from where the run started (`git push origin {branch}`)"
            )
    for commit in filter(None, [run.base_commit, record.head_commit]):
        known = subprocess.run(
            ["git", "-C", str(root), "cat-file", "-e", f"{commit}^{{commit}}"],
            capture_output=True,
            env=git_env(),
            check=False,
        )
        if known.returncode != 0:
            raise UsageError(
                f"{root} lacks commit {commit[:12]} of run {run.run_id}: the branch on origin is "
                f"behind the run's checkpoint; push {branch} from where the run started"
            )
    record.run = run.model_copy(update={"repo": str(root), "worktree": str(worktree), "run_dir": str(paths.root)})


def drop_cache(cache: Path) -> int:
    """Move every cached model answer aside (``dropped/``), so none is replayed; how many were dropped."""
    answers = sorted(cache.glob("*.json")) if cache.is_dir() else []
    if answers:
        (cache / "dropped").mkdir(exist_ok=True)
    for path in answers:
        os.replace(path, cache / "dropped" / path.name)
    return len(answers)


def write_through(
    spec: PipelineSpec, record: RunRecord, paths: RunPaths, edit: Callable[[RunState], dict], store=None
) -> None:
    """Change a run's state from outside a run (``pipeline rollback``), where a resume will read it.

    ``edit`` gets the checkpointed state and returns the fields it changes; they are written to the checkpoints
    as the node that made the latest checkpoint, so the run stands where it stood (a finished run stays finished,
    an interrupted one resumes at the same node). run.json, the phase reports and summary.md are then rewritten
    from the checkpoints, as after a node. A run with no checkpoint yet has no state to change.
    """
    from agent_pipelines.engine.checkpoint import Checkpoints
    from agent_pipelines.engine.graph import build_graph, node_names

    run = record.run
    names = [phase.node(role) for phase, role in node_names(spec, run.phases)]
    config = {"configurable": {"thread_id": run.run_id}}
    with store.checkpointer(paths.root) if store is not None else Checkpoints(paths.state_db) as checkpoints:
        graph = build_graph(spec, run.phases, {}, 0, checkpointer=checkpoints.saver)
        current = graph.get_state(config)
        if not current.values or (current.next and current.next[0] == names[0]):
            return
        as_node = names[names.index(current.next[0]) - 1] if current.next else names[-1]
        graph.update_state(config, edit(RunState.model_validate(current.values)), as_node=as_node)
        runner = Runner(spec, record, paths, _quiet, store)
        runner.redactor = run_redactor(run, paths)
        runner._finish(graph, config)


class Runner:
    def __init__(self, spec: PipelineSpec, record: RunRecord, paths: RunPaths, on_event: Events, store=None) -> None:
        self.spec, self.record, self.paths = spec, record, paths
        self.store = store
        self.outer_events = on_event
        self.llm = None
        self.redactor: Redactor | None = None  # opened by execute, before the model client
        self.decisions: dict | None = None  # a person's review decisions the paused run resumes with
        # phase report -> (its text, the redactor and how many secrets it knew when it masked it, as written)
        self._reports: dict[Path, tuple[str, Redactor | None, int, str]] = {}

    def on_event(self, kind: str, **data) -> None:
        self.outer_events(kind, **data)

    def save(self) -> None:
        save_record(self.record, self.paths.run_json, self.redactor, self.store)

    def _open_llm(self, stack: ExitStack, run: RunContext):
        """The model client, in LLM mode only (offline never builds it)."""
        if run.options.get("llm") != "1":
            return None
        from agent_pipelines.engine.llm import LLM, LLMConfig, LLMSetupError

        try:
            config = LLMConfig.from_options(run.options)
        except LLMSetupError as err:
            raise UsageError(str(err)) from None
        assert self.redactor is not None
        return stack.enter_context(
            LLM(
                config,
                self.paths.root / "llm-cache",
                self.spec.name,
                self.redactor,
                run_dir=self.paths.root,
                notify=self.on_event,
            )
        )

    def _open_redactor(self, run: RunContext) -> Redactor:
        return run_redactor(run, self.paths)

    def execute(
        self, kind: Literal["run", "resume"], state: RunState | None, from_phase: str | None = None
    ) -> RunRecord:
        from agent_pipelines.agents import AGENTS
        from agent_pipelines.agents.base import AgentContext
        from agent_pipelines.engine.checkpoint import Checkpoints
        from agent_pipelines.engine.graph import build_graph, node_names, tracing
        from agent_pipelines.engine.llm_budget import BudgetExhausted

        record, run = self.record, self.record.run
        invocation = Invocation(
            kind=kind, number=len(record.invocations) + 1, from_phase=from_phase or "", started=now()
        )
        record.invocations.append(invocation)
        config = {"configurable": {"thread_id": run.run_id}}
        roles = {role for _, role in node_names(self.spec, run.phases)}
        with ExitStack() as stack:
            checkpoints = stack.enter_context(
                self.store.checkpointer(self.paths.root) if self.store is not None else Checkpoints(self.paths.state_db)
            )
            try:
                # Recreate or scrub the worktree before any agent looks at it; a run that committed nothing
                # may not have its branch yet (killed right after its record was written).
                base = run.base_commit if not any(c.commit for c in record.changes) else None
                with Workspace.open(Path(run.repo), Path(run.worktree), run.branch, base=base):
                    pass
            except RepoError as err:
                raise UsageError(str(err)) from None
            domain = self.spec.domain(run)
            stack.callback(domain.close)
            self.redactor = self._open_redactor(run)
            self.llm = llm = self._open_llm(stack, run)
            agents = {role: stack.enter_context(AGENTS[role](AgentContext(run, domain, llm))) for role in sorted(roles)}
            graph = build_graph(
                self.spec,
                run.phases,
                agents,
                invocation.number,
                self.on_event,
                checkpoints.saver,
                llm=llm,
                review=run.options.get("review") == "1",
            )
            start_config: dict = config
            if kind == "resume" and from_phase is None and not graph.get_state(config).values:
                state = initial_state(record)  # killed before the graph's first checkpoint: start it afresh
            elif kind == "resume":
                resume_at = self._resume_point(graph, config, from_phase)
                if resume_at is None:
                    invocation.outcome = "nothing to do: the run had finished"
                    invocation.finished = now()
                    record.status = "completed"
                    self._finish(graph, config)
                    return record
                start_config = resume_at
            start_config = self._moved(graph, start_config)
            record.status, record.error = "running", ""
            claim(record)
            self.save()
            callbacks = stack.enter_context(tracing(self.redactor))
            stream_config = {**start_config, "callbacks": callbacks} if callbacks else start_config
            from agent_pipelines.engine.telemetry import session, span

            stack.enter_context(session(self.redactor, self.on_event))  # spans only when an exporter is configured
            stack.enter_context(
                span(
                    f"{kind} {self.spec.name}",
                    **{"pipeline.run_id": run.run_id, "pipeline.invocation": invocation.number},
                )
            )
            try:
                if self.decisions is not None:  # `pipeline approve/reject`: the paused approval node gets them
                    from langgraph.types import Command

                    start: RunState | Command | None = Command(resume=self.decisions)
                else:
                    start = state
                # The "values" chunk after a node is the checkpointed state (yielded once it is saved): no
                # get_state, which reads every channel back from the checkpoint, after every node.
                values: dict | None = None
                ran = False
                for mode, chunk in graph.stream(
                    start, stream_config, context=run, stream_mode=["updates", "values"], durability="sync"
                ):
                    if mode == "values":
                        values = {k: v for k, v in chunk.items() if not k.startswith("__")}  # not __interrupt__
                        if ran:
                            self._sync(graph, config, values)
                            ran = False
                        continue
                    nodes = [name for name in chunk if not name.startswith("__")]
                    invocation.nodes.extend(nodes)
                    if any(chunk[name] for name in nodes):
                        ran = True  # the state it wrote comes next, as "values"
                    elif nodes:
                        self._sync(graph, config, values)  # wrote nothing: the state is what it was
                paused = [i.value for i in graph.get_state(config).interrupts]
                if paused:  # an approval node waits for a person (`pipeline run --review`)
                    record.status, record.review_phase = "awaiting review", paused[0]["phase"]
                    invocation.outcome = f"awaiting review of phase {record.review_phase}"
                else:
                    record.status, record.review_phase = "completed", ""
                    invocation.outcome = "completed"
            except BudgetExhausted as err:
                record.status, record.error = (
                    "stopped",
                    f"{err}; `pipeline resume {run.run_id} --max-cost/--max-tokens ...` continues",
                )
                invocation.outcome = f"stopped: {err}"
            except KeyboardInterrupt:
                record.status, record.error = "interrupted", "interrupted by the user"
                invocation.outcome = "interrupted"
                raise
            except Exception as err:  # the run fails, the record says why, resume can continue
                record.status, record.error = "failed", f"{type(err).__name__}: {err}"
                invocation.outcome = f"failed: {record.error}"
            finally:
                invocation.finished = now()
                self._finish(graph, config)
        return record

    def _moved(self, graph, config: dict) -> dict:
        """A run continued in another clone (``adopt``): its checkpoint learns the run's new paths first."""
        values = graph.get_state(config).values
        if "run" in values and values["run"].worktree != self.record.run.worktree:
            return graph.update_state(config, {"run": self.record.run})
        return config

    def _resume_point(self, graph, config: dict, from_phase: str | None) -> dict | None:
        current = graph.get_state(config)
        if from_phase is None:
            if not current.next:
                return None
            return config
        first = self.spec.phase(from_phase).node(self.spec.phase(from_phase).agents[0])
        for snapshot in graph.get_state_history(config):
            if snapshot.next == (first,):
                break
        else:
            raise UsageError(
                f"phase {from_phase} never started in run {self.record.run.run_id}; "
                f"`pipeline resume {self.record.run.run_id}` continues it"
            )
        run = self.record.run
        with Workspace.open(Path(run.repo), Path(run.worktree), run.branch) as ws:
            ws.reset_to(snapshot.values["head_commit"])  # the re-run phases' commits are replaced, not duplicated
        return snapshot.config

    def _sync(self, graph, config: dict, values: dict | None = None) -> None:
        """run.json and the phase reports from the checkpointed state (nothing else writes the record's state):
        ``values`` as the graph streamed them after a node, else read from the checkpoint."""
        record = self.record
        if values is None:
            values = graph.get_state(config).values
        if values:  # no checkpoint yet (stopped before the first node): the record's pending phases stand
            record.project(values)
        from agent_pipelines.engine.report import render_phase

        phases = []
        for index, phase in enumerate(record.phases, start=1):
            if phase.nodes:
                path = self.paths.phase_report(index, phase.phase)
                if phase.report_path != path.name:  # a copy: the state's own objects stay as the graph has them
                    phase = phase.model_copy(update={"report_path": path.name})
                self._write_report(path, render_phase(record, phase.phase))
            phases.append(phase)
        record.phases = phases
        if self.llm is not None:
            from agent_pipelines.engine.llm_budget import usage_by_node

            record.llm_calls = self.llm.ledger.calls()
            record.usage = usage_by_node(record.llm_calls)
        self.save()

    def _write_report(self, path: Path, text: str) -> None:
        """Write a phase report redacted, unless it would say what the file already says.

        A report is rendered after every node, but a phase's text changes only when its own state does; masking
        the whole text again (the redactor's many patterns, over the findings table) is the costly part. The
        masked text depends on the text and on the secrets the redactor has learned, which only grow
        (``Redactor.values``): while both are the same, so is the result."""
        redactor = self.redactor
        kept = self._reports.get(path)
        if kept is not None and kept[:3] == (text, redactor, len(redactor.values) if redactor is not None else 0):
            return
        clean = self._clean(text)
        if kept is None or kept[3] != clean:
            write_atomic(path, clean)
        self._reports[path] = (text, redactor, len(redactor.values) if redactor is not None else 0, clean)

    def _clean(self, text: str) -> str:
        return self.redactor(text) if self.redactor is not None else text

    def _finish(self, graph, config: dict) -> None:
        from agent_pipelines.engine.report import render_summary

        self._sync(graph, config)
        if self.llm is not None and self.record.status == "completed":
            from agent_pipelines.engine.narrative import write_narrative

            self.record.narrative, note = write_narrative(self.llm, self.record)
            if note:
                self.record.phases[-1].notes.append(f"reporter: {note}")
            from agent_pipelines.engine.llm_budget import usage_by_node

            self.record.llm_calls = self.llm.ledger.calls()
            self.record.usage = usage_by_node(self.record.llm_calls)
        write_atomic(self.paths.summary, self._clean(render_summary(self.record)))
        if self.record.head_findings is not None:
            from agent_pipelines.engine.findings_output import render

            head = render(self.record.head_findings, "json", Path(self.record.run.worktree))
            if self.redactor is not None:
                head = json.dumps(self.redactor.scrub(json.loads(head)), indent=2, ensure_ascii=False) + "\n"
            write_atomic(self.paths.summary.parent / "findings-head.json", head)
        self.save()
        self.on_event("run_end", record=self.record)


def run_redactor(run: RunContext, paths: RunPaths) -> Redactor:
    """The run's redactor: what run.json, the reports, traces and the model never see in clear."""
    from agent_pipelines.engine.redact import Redactor, env_values, run_key

    return Redactor(env_values(Path(run.worktree)) | env_values(Path(run.repo)), key=run_key(paths.root))


def schema() -> dict:
    """The JSON schema of run.json (what ``RunRecord`` exports)."""
    return RunRecord.model_json_schema()
