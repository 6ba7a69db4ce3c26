"""The ``pipeline`` commands (typer): run, resume, summary, list, show, pipelines, apply, rollback, prune.

Exit codes, the same for every command (the README has the table): 0 done; 1 the run failed, a disk or
permission error stopped it (resumable), or `analyze` found problems at ``--fail-on``; 2 an unusable
argument or state, said in one line; 3 a run stopped by its budget (resumable); 4 a run that finished with a
failed task or phase; 130 interrupted (resumable).

``pipeline analyze`` is dispatched before this module is imported (see
``engine.cli``); its typer command here only forwards, for ``--help`` listings
and for tests that drive the app in-process.

Heavy imports (LangGraph, the OpenAI SDK, GitPython) happen inside the
commands that need them, so ``pipeline analyze`` and ``pipeline --help``
start fast.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand

if TYPE_CHECKING:
    from rich.progress import Progress as Bar

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Agent-driven optimization pipelines: analyze, fix through git, review, measure.",
)
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

REPORTS_DIR = typer.Option(
    None,
    "--reports-dir",
    show_default=False,
    help="Where run directories live (default: $XDG_STATE_HOME/agent-pipelines/runs; a run id "
    "is found through the run index wherever its directory is).",
)
EXIT_TASKS_FAILED = 4  # the run finished, but a task or phase failed (declined tasks are not failures)
EXIT_AWAITING_REVIEW = 5  # `run --review` paused: a phase's kept changes wait for `pipeline approve`/`reject`
STATE = typer.Option(
    None,
    "--state",
    envvar="PIPELINE_STATE_URL",
    show_envvar=True,
    metavar="URL",
    help="Where run state lives: a postgresql:// URL shared by every machine (default: SQLite files "
    "in the reports directory).",
)
RESUME_IN = typer.Option(
    None,
    "--repo",
    help="A clone on this machine: continue here a run that started elsewhere (its branch pushed to origin).",
)
RUN_HERE = typer.Option(
    None,
    "--repo",
    help="A clone on this machine: work here on a run that started elsewhere (its branch pushed to origin).",
)
FORMAT = typer.Option("text", "--format", help="text, or json (the full records, for scripts).")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        from agent_pipelines.engine.analyze_cli import DISTRIBUTION

        try:
            out.print(f"pipeline {version(DISTRIBUTION)}", markup=False, highlight=False)
        except PackageNotFoundError:
            out.print("pipeline (not installed: version unknown)", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_version, help="Print the version and exit."
    ),
) -> None:
    """Agent-driven optimization pipelines: analyze, fix through git, review, measure."""


def _check_format(fmt: str) -> None:
    if fmt not in ("text", "json"):
        fail(f"--format must be text or json, not {fmt!r}")


def _print_json(value) -> None:
    """A JSON document on stdout, whole and unwrapped (no console width, no markup)."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def os_fail(error: OSError, then: str = "`pipeline resume RUN_ID` continues the run") -> None:
    """A full disk or a denied directory: one line and exit 1; run.json is written whole or not at all,
    so the run resumes once the cause is gone."""
    where = f" ({error.filename})" if error.filename else ""
    fail(f"{error.strerror or error}{where}; fix that, then {then}", 1)


def _pipelines():
    from agent_pipelines.engine.spec import PipelineLookupError, loaded_pipelines

    try:
        return loaded_pipelines()
    except PipelineLookupError as error:
        fail(str(error))


def _pipeline(name: str):
    from agent_pipelines.engine.spec import PipelineLookupError, find_pipeline

    try:
        return find_pipeline(name)
    except PipelineLookupError as error:
        fail(str(error))


def heartbeat_seconds() -> float:
    """How often a line says a long step is still working when stderr is not a terminal (CI logs, pipes):
    ``PIPELINE_HEARTBEAT`` seconds, 10 by default (a CI log shows life well before a typical no-output
    timeout of several minutes); 0 turns it off."""
    try:
        return max(0.0, float(os.environ.get("PIPELINE_HEARTBEAT", "10")))
    except ValueError:
        return 10.0


class Progress:
    """One line per node as it finishes; silent with --quiet. While a node works: on a terminal, a bar with
    the nodes done of the run's total and the time spent; elsewhere, a heartbeat line every few seconds."""

    def __init__(self, quiet: bool, total: int | None = None) -> None:
        self.quiet = quiet
        self.total, self.done = total, 0
        self.phase = ""
        self.run_id = ""
        self.live: Bar | None = None
        self.beat: threading.Event | None = None

    def __call__(self, kind: str, **data) -> None:
        if kind == "started":
            self.run_id = data["run_id"]
        if self.quiet:
            return
        if kind == "example":
            err.print(f"[dim]No --repo given: running on the bundled example, copied to[/dim] {data['repo']}")
        elif kind == "started":
            err.print(f"run {data['run_id']}: {data['run_dir']}", markup=False, highlight=False, soft_wrap=True)
        elif kind == "base":
            err.print(data["statement"], markup=False, highlight=False, soft_wrap=True)
        elif kind == "node_start":
            if data["phase"] != self.phase:
                self.phase = data["phase"]
                err.print(f"[bold]▶ {self.phase}[/bold]")
            if self.total and self.done >= self.total:  # a repair round (or an approval) adds steps
                self.total = self.done + 1
            self._working(data["agent"])
        elif kind in ("llm_down", "warning"):
            self._stop()
            err.print(f"[yellow]![/yellow] {data['message']}", markup=True, highlight=False, soft_wrap=True)
        elif kind == "node_end":
            self._stop()
            self.done += 1
            mark = "[red]✗[/red]" if data.get("failed") else "[green]✓[/green]"
            err.print(f"  {mark} {data['agent']:<12} {data.get('summary', '')}")
        elif kind == "run_end":
            self._stop()

    def _working(self, agent: str) -> None:
        if sys.stderr.isatty():  # a real terminal (FORCE_COLOR colours a CI log; it must not draw bars in it)
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as Bar

            self.live = Bar(
                TextColumn(f"  {agent} working…"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("steps"),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            self.live.add_task(agent, total=self.total, completed=self.done)
            self.live.start()
            return
        every = heartbeat_seconds()
        if every > 0:
            self.beat = stop = threading.Event()
            started = time.monotonic()
            step = f" (step {self.done + 1} of {self.total})" if self.total else ""

            def beat() -> None:
                while not stop.wait(every):
                    err.print(
                        f"  {agent} still working{step}: {time.monotonic() - started:.0f} s",
                        markup=False,
                        highlight=False,
                    )

            threading.Thread(target=beat, name="heartbeat", daemon=True).start()

    def _stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.beat is not None:
            self.beat.set()
            self.beat = None

    def interrupted(self, run_id: str = "") -> None:
        """The line an interrupt ends with: the exact command that continues the run, or that none was made."""
        self._stop()
        run_id = run_id or self.run_id
        if run_id:
            err.print(
                f"interrupted; run {run_id} is listed as interrupted; `pipeline resume {run_id}` continues it",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        else:
            err.print("interrupted before the run was made; nothing to resume or clean up", markup=False)


def _final(record, paths_root: Path, fmt: str, quiet: bool) -> None:
    if fmt == "json":
        _print_json(json.loads(record.model_dump_json()))  # rich's print_json took 1.6 s for a 1.3 MB record
    elif not quiet:
        failures = record.failures
        broke = sum(c.status.value == "failed" for c in record.changes)
        title = record.status
        if failures and record.status == "completed":
            title = "completed with " + (
                f"{broke} failed task{'s' if broke != 1 else ''}" if broke else "a failed phase"
            )
        table = Table(title=f"run {record.run.run_id}: {title}")
        for column in ("phase", "status", "commits kept", "reverted", "declined", "failed"):
            table.add_column(column)
        for phase in record.phases:
            cs = [c for c in record.changes if c.phase == phase.phase]
            table.add_row(
                phase.title,
                record.phase_status(phase.phase),
                *(str(sum(c.status.value == s for c in cs)) for s in ("committed", "reverted", "declined", "failed")),
            )
        err.print(table)
        if record.error:
            err.print(f"[red]{record.error}[/red]")
        if failures and record.status == "completed":
            err.print(f"[red]✗ failed: {', '.join(failures)}[/red] (the summary says why)")
        err.print(f"Summary: {paths_root / 'summary.md'}", soft_wrap=True)
        err.print(f"Branch:  git -C {record.run.repo} log {record.run.branch}", soft_wrap=True)
    if record.status == "failed":
        raise typer.Exit(1)
    if record.status == "completed" and record.failures:
        raise typer.Exit(EXIT_TASKS_FAILED)
    if record.status == "stopped":
        err.print(f"stopped, resumable: {record.error}")
        raise typer.Exit(3)
    if record.status == "awaiting review":
        if not quiet and fmt != "json":
            err.print(
                f"awaiting review of phase {record.review_phase}: `pipeline review {record.run.run_id}`, then "
                f"`pipeline approve` or `pipeline reject`",
                soft_wrap=True,
            )
        raise typer.Exit(EXIT_AWAITING_REVIEW)


def _option_params(spec) -> list:
    """The pipeline's declared options (``engine.spec.Option``) as parameters of `pipeline run`, made by typer
    itself from a synthesized signature. A value arrives as text (None when not given) and is checked by
    ``Option.check``, so a bad value is one line like every other unusable argument."""
    import inspect

    def options(**values) -> None:
        return None

    params, annotations = [], {}
    for option in spec.options:
        name = f"opt__{option.name}"
        panel = f"Options of {spec.name}"
        if option.type is bool:
            default = typer.Option(
                None,
                f"{option.flags[0]}/{option.flags[1]}",
                help=option.help + f" (default: {option.flags[0] if option.default else option.flags[1]})",
                show_default=False,
                rich_help_panel=panel,
            )
            annotations[name] = Optional[bool]  # noqa: UP045 (typer reads this annotation at runtime)
        else:
            shown = "" if option.default is None else f" (default: {option.default})"
            default = typer.Option(
                None,
                option.flags[0],
                help=option.help + shown,
                show_default=False,
                metavar=option.metavar or "|".join(option.choices) or option.type.__name__.upper(),
                rich_help_panel=panel,
            )
            annotations[name] = Optional[str]  # noqa: UP045 (typer reads this annotation at runtime)
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotations[name])
        )
    options.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # typer reads it
    options.__annotations__ = annotations
    holder = typer.Typer()
    holder.command()(options)
    return [p for p in typer.main.get_command(holder).params if p.name.startswith("opt__")]


class PipelineCommand(TyperCommand):
    """`pipeline run PIPELINE`: the generic options plus those the named pipeline declares
    (``PipelineSpec.options``), read from the command line once the pipeline's name is known."""

    def _pipeline_name(self, args: list[str]) -> str | None:
        takes_value = {o for p in self.params if not getattr(p, "is_flag", True) for o in p.opts}
        skip = False
        for arg in args:
            if skip:
                skip = False
            elif arg in takes_value:
                skip = True
            elif not arg.startswith("-"):
                return arg
        return None

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        name = self._pipeline_name(args)
        if name is not None:
            from agent_pipelines.engine.spec import PipelineLookupError, find_pipeline

            try:
                spec = find_pipeline(name)
            except PipelineLookupError as error:
                fail(str(error))
            ctx.meta["pipeline_options"] = spec.options
            ctx.meta["pipeline_params"] = _option_params(spec)
        return super().parse_args(ctx, args)

    def get_params(self, ctx) -> list:
        return [*super().get_params(ctx), *ctx.meta.get("pipeline_params", [])]

    def invoke(self, ctx):
        declared = ctx.meta.get("pipeline_options", ())
        ctx.meta["pipeline_values"] = {o.name: ctx.params.pop(f"opt__{o.name}", None) for o in declared}
        return super().invoke(ctx)


def _declared_options(ctx: typer.Context, spec) -> dict[str, str]:
    """The values of the pipeline's own options, as the run keeps them (text; a bool as "1"/"0")."""
    from agent_pipelines.engine.spec import OptionError

    values = ctx.meta.get("pipeline_values", {})
    encoded = {}
    for option in spec.options:
        given = values.get(option.name)
        try:
            text = option.encode(option.default if given is None else option.check(given))
        except OptionError as error:
            fail(str(error))
        if text is not None:
            encoded[option.name] = text
    return encoded


@app.command(cls=PipelineCommand)
def run(
    ctx: typer.Context,
    pipeline: str = typer.Argument(
        ..., help="Pipeline name (see `pipeline pipelines`); `pipeline run NAME --help` lists its own options too."
    ),
    repo: Path | None = typer.Option(None, "--repo", help="Git checkout to optimize (default: the bundled example)."),
    phases: str | None = typer.Option(None, "--phases", help="Comma-separated phases to run (default: all)."),
    reports_dir: Path | None = REPORTS_DIR,
    unsafe_fixes: bool = typer.Option(False, "--unsafe-fixes", help="Also apply fixes marked unsafe."),
    review: bool = typer.Option(
        False,
        "--review",
        help="Pause after each phase's reviewer until a person approves or rejects its kept changes (`pipeline review`, `approve`, `reject`).",
    ),
    attempts: int = typer.Option(
        2,
        "--attempts",
        min=1,
        help="Attempts a task gets when the reviewer rejects its change: the retry sees the verdict (default 2; 1: no repair loop).",
    ),
    llm: bool = typer.Option(
        False, "--llm", help="Agents also reason with an OpenAI-compatible model (OPENAI_API_KEY, OPENAI_BASE_URL)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="Model name in LLM mode (default: $OPENAI_MODEL or gpt-4o-mini)."
    ),
    max_cost: float | None = typer.Option(
        None, "--max-cost", min=0, help="Stop once this many USD are spent (checked before every model call)."
    ),
    max_tokens: int | None = typer.Option(
        None, "--max-tokens", min=0, help="Stop once this many tokens are spent (checked before every model call)."
    ),
    max_output_tokens: int | None = typer.Option(
        None, "--llm-max-output-tokens", min=1, help="max_tokens sent with every request (default 4096)."
    ),
    price_input: float | None = typer.Option(
        None, "--price-input", min=0, help="USD per 1M input tokens, for a model without a known price."
    ),
    price_output: float | None = typer.Option(None, "--price-output", min=0, help="USD per 1M output tokens."),
    price_file: Path | None = typer.Option(
        None, "--price-file", help='JSON prices: {"model": {"input": USD, "output": USD}} per 1M tokens.'
    ),
    llm_timeout: float | None = typer.Option(
        None, "--llm-timeout", min=0.1, help="Seconds a model request may take (default 60)."
    ),
    llm_deadline: float | None = typer.Option(
        None,
        "--llm-deadline",
        min=0,
        help="Seconds of model time for the whole invocation; then agents keep their own results.",
    ),
    llm_tool_rounds: int | None = typer.Option(
        None,
        "--llm-tool-rounds",
        min=0,
        help="Rounds of read-only tool calls (read a file, list a directory) a model may make per question (default 4; 0: none).",
    ),
    llm_tool_max_chars: int | None = typer.Option(
        None, "--llm-tool-max-chars", min=1, help="Characters of one tool result sent to the model (default 20000)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    fmt: str = typer.Option("text", "--format", help="text, or json to print the run record."),
    state: str | None = STATE,
) -> None:
    """Run a pipeline on a repository; changes land as commits on branch pipeline/<run-id>."""
    _check_format(fmt)
    spec = _pipeline(pipeline)
    from agent_pipelines.engine.runs import UsageError, select_phases, start_run

    chosen = [p.strip() for p in phases.split(",") if p.strip()] if phases else None
    options = {
        "unsafe_fixes": "1" if unsafe_fixes else "0",
        "attempts": str(attempts),
        **({"review": "1"} if review else {}),
        **_declared_options(ctx, spec),
        "llm": "1" if llm else "0",
        **_llm_options(
            model,
            max_cost,
            max_tokens,
            max_output_tokens=max_output_tokens,
            price_input=price_input,
            price_output=price_output,
            price_file=price_file,
            llm_timeout=llm_timeout,
            llm_deadline=llm_deadline,
            llm_tool_rounds=llm_tool_rounds,
            llm_tool_max_chars=llm_tool_max_chars,
        ),
    }
    try:
        steps = sum(len(spec.phase(p).agents) for p in select_phases(spec, chosen))
    except UsageError as error:
        fail(str(error))
    progress = Progress(quiet, steps)
    try:
        record = start_run(spec, repo, reports_dir, chosen, options, progress, state=state)
    except UsageError as error:
        fail(str(error))
    except OSError as error:
        os_fail(error)
    except KeyboardInterrupt:
        progress.interrupted()
        raise typer.Exit(130) from None
    _final(record, Path(record.run.run_dir), fmt, quiet)


def _llm_options(model: str | None, max_cost: float | None, max_tokens: int | None, **more) -> dict[str, str]:
    """The LLM flags as run options (strings), leaving out those not given."""
    options = {"llm_model": model, "max_cost": max_cost, "max_tokens": max_tokens, **more}
    return {k: str(v) for k, v in options.items() if v is not None}


@app.command()
def resume(
    run_id: str = typer.Argument(..., help="The run to continue."),
    phase: str | None = typer.Option(None, "--phase", help="Re-run this phase and the ones after it."),
    reports_dir: Path | None = REPORTS_DIR,
    max_cost: float | None = typer.Option(None, "--max-cost", min=0, help="A new cost budget (USD) in LLM mode."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=0, help="A new token budget in LLM mode."),
    price_input: float | None = typer.Option(None, "--price-input", min=0, help="USD per 1M input tokens."),
    price_output: float | None = typer.Option(None, "--price-output", min=0, help="USD per 1M output tokens."),
    price_file: Path | None = typer.Option(None, "--price-file", help="JSON prices per 1M tokens."),
    llm_timeout: float | None = typer.Option(None, "--llm-timeout", min=0.1, help="Seconds a model request may take."),
    llm_deadline: float | None = typer.Option(
        None, "--llm-deadline", min=0, help="Seconds of model time for this invocation."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Drop the model answers cached so far: ask again."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    fmt: str = typer.Option("text", "--format"),
    state: str | None = STATE,
    repo: Path | None = RESUME_IN,
) -> None:
    """Continue a failed or interrupted run, or re-run it from one phase."""
    _check_format(fmt)
    _continue(
        run_id,
        quiet,
        fmt,
        reports_dir=reports_dir,
        phase=phase,
        options=_llm_options(
            None,
            max_cost,
            max_tokens,
            price_input=price_input,
            price_output=price_output,
            price_file=price_file,
            llm_timeout=llm_timeout,
            llm_deadline=llm_deadline,
        ),
        no_cache=no_cache,
        state=state,
        repo=repo,
    )


def _continue(run_id: str, quiet: bool, fmt: str, **how) -> None:
    """Resume ``run_id`` (``how``: resume_run's keywords) with progress shown, and print its outcome."""
    from agent_pipelines.engine.runs import UsageError, resume_run
    from agent_pipelines.engine.workspace import RepoError

    progress = Progress(quiet)
    try:
        record = resume_run(_pipelines(), run_id=run_id, on_event=progress, **how)
    except (UsageError, RepoError) as error:
        fail(str(error))
    except OSError as error:
        os_fail(error)
    except KeyboardInterrupt:
        progress.interrupted(run_id)
        raise typer.Exit(130) from None
    _final(record, Path(record.run.run_dir), fmt, quiet)


def _awaiting(record) -> list:
    """The changes of the phase a paused run waits on a person for (in the plan's order)."""
    from agent_pipelines.engine.approval import awaiting

    return awaiting(record)


@app.command()
def review(
    run_id: str = typer.Argument(..., help="A run paused by `pipeline run --review`."),
    reports_dir: Path | None = REPORTS_DIR,
    state: str | None = STATE,
    fmt: str = typer.Option(
        "text", "--format", help="text, or json (task, title, commit, attempt, gates, diff of each, for scripts)."
    ),
    repo: Path | None = typer.Option(
        None, "--repo", help="A clone on this machine to read the diffs from (the run's branch pushed to origin)."
    ),
) -> None:
    """List the kept changes a paused run waits on: each task's id, commit, the reviewer's gates and the diff."""
    from agent_pipelines.engine.approval import pending_review
    from agent_pipelines.engine.runs import UsageError, load_record, locate, open_store

    _check_format(fmt)
    try:
        with open_store(state) as store:
            record, paths = load_record(reports_dir, run_id, store)
            if record.status == "awaiting review":
                locate(record, paths, repo, store)  # the diffs come from a clone here (its branch fetched if need be)
    except UsageError as error:
        fail(str(error))
    if record.status != "awaiting review":
        fail(f"run {run_id} is not awaiting review (it is {record.status})")
    pending = pending_review(record)
    if fmt == "json":
        _print_json(pending)
        return
    out.print(f"run {run_id}: phase {record.review_phase} awaits review", markup=False, highlight=False)
    for change in pending["changes"]:
        out.print(
            f"\n== task {change['task_id']}: {change['title']} (commit {change['commit'][:10]}, "
            f"attempt {change['attempt']})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        for gate in change["gates"]:
            shown = "FAILED" if gate["status"] == "failed" else gate["status"]
            out.print(f"   {shown:12} {gate['name']}: {gate['detail']}", markup=False, highlight=False, soft_wrap=True)
        out.print(
            change["diff"].rstrip() or change.get("diff_error", ""), markup=False, highlight=False, soft_wrap=True
        )
    out.print(
        f"\n`pipeline approve {run_id} --all` (or --task ID), `pipeline reject {run_id} --task ID --reason TEXT`",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _decide(run_id: str, reports_dir, state, decisions: dict, quiet: bool, fmt: str, repo: Path | None) -> None:
    """Continue a paused run from its checkpoint with a person's decisions (in the clone ``repo``, if given)."""
    from agent_pipelines.engine.runs import UsageError, load_record, open_store

    _check_format(fmt)
    try:
        with open_store(state) as store:
            record, _ = load_record(reports_dir, run_id, store)
    except UsageError as error:
        fail(str(error))
    if record.status != "awaiting review":
        fail(f"run {run_id} is not awaiting review (it is {record.status})")
    pending = [c.task_id for c in _awaiting(record)]
    named = [*decisions.get("approve", []), *decisions.get("reject", {})]
    unknown = [t for t in named if t not in pending]
    if unknown:
        fail(f"run {run_id} awaits no decision on {', '.join(unknown)}; it awaits: {', '.join(pending)}")
    _continue(run_id, quiet, fmt, reports_dir=reports_dir, state=state, repo=repo, decisions=decisions)


def _task_ids(record_tasks: list[str], given: list[str]) -> list[str]:
    """Task ids as given, or each expanded from a unique prefix of an awaiting one."""
    found = []
    for item in given:
        matches = [t for t in record_tasks if t.startswith(item)]
        found.append(matches[0] if len(matches) == 1 else item)
    return found


@app.command()
def approve(
    run_id: str = typer.Argument(..., help="A run awaiting review."),
    task: list[str] | None = typer.Option(
        None, "--task", help="A task to approve (repeatable; see `pipeline review`)."
    ),
    all_: bool = typer.Option(False, "--all", help="Approve every change the run awaits a decision on."),
    reports_dir: Path | None = REPORTS_DIR,
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    fmt: str = typer.Option("text", "--format"),
    state: str | None = STATE,
    repo: Path | None = RUN_HERE,
) -> None:
    """Approve kept changes of a paused run and continue it from its checkpoint."""
    if bool(task) == all_:
        fail("give --task ID (repeatable) or --all")
    ids = _pending_ids(run_id, reports_dir, state)
    _decide(run_id, reports_dir, state, {"approve": ids if all_ else _task_ids(ids, task or [])}, quiet, fmt, repo)


@app.command()
def reject(
    run_id: str = typer.Argument(..., help="A run awaiting review."),
    task: list[str] = typer.Option(..., "--task", help="A task to reject (repeatable; see `pipeline review`)."),
    reason: str = typer.Option("rejected by a person", "--reason", help="Why: kept in the run's record and reports."),
    reports_dir: Path | None = REPORTS_DIR,
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    fmt: str = typer.Option("text", "--format"),
    state: str | None = STATE,
    repo: Path | None = RUN_HERE,
) -> None:
    """Reject kept changes of a paused run: they are reverted like a failed gate, with the reason; the run continues."""
    ids = _task_ids(_pending_ids(run_id, reports_dir, state), task)
    _decide(run_id, reports_dir, state, {"reject": {t: reason for t in ids}}, quiet, fmt, repo)


def _pending_ids(run_id: str, reports_dir, state) -> list[str]:
    from agent_pipelines.engine.runs import UsageError, load_record, open_store

    try:
        with open_store(state) as store:
            record, _ = load_record(reports_dir, run_id, store)
    except UsageError as error:
        fail(str(error))
    return [c.task_id for c in _awaiting(record)]


@app.command()
def summary(run_id: str, reports_dir: Path | None = REPORTS_DIR, state: str | None = STATE) -> None:
    """Print, and rewrite, a run's execution summary from its run.json."""
    from agent_pipelines.engine.report import render_summary
    from agent_pipelines.engine.runs import UsageError, load_record, open_store, write_atomic

    try:
        with open_store(state) as store:
            record, paths = load_record(reports_dir, run_id, store)
    except UsageError as error:
        fail(str(error))
    text = render_summary(record)
    try:
        paths.root.mkdir(parents=True, exist_ok=True)  # a run from the shared store: its summary lands here
        write_atomic(paths.summary, text)
    except OSError as error:
        os_fail(error, "retry")
    sys.stdout.write(text)


def _run_row(record) -> dict:
    """One run as `list --format json` gives it: full id, status as shown, where its files and branch are."""
    from agent_pipelines.engine.runs import shown_status

    run = record.run
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "status": shown_status(record),
        "recorded_status": record.status,
        "updated": record.updated.isoformat(),
        "repo": run.repo,
        "branch": run.branch,
        "worktree": run.worktree,
        "run_dir": run.run_dir,
        "error": record.error,
    }


@app.command("list")
def list_runs(reports_dir: Path | None = REPORTS_DIR, fmt: str = FORMAT, state: str | None = STATE) -> None:
    """List the runs: every run you started, across repositories (or those in --reports-dir, or in the --state
    database)."""
    from agent_pipelines.engine.runs import UsageError, list_records, open_store, shown_status

    _check_format(fmt)
    try:
        with open_store(state) as store:
            records = sorted(list_records(reports_dir, store), key=lambda r: (r.updated, r.run.run_id))
    except UsageError as error:
        fail(str(error))
    if fmt == "json":
        _print_json([_run_row(r) for r in records])
        return
    rows = [("RUN", "PIPELINE", "STATUS", "UPDATED", "REPOSITORY")]
    rows += [
        (r.run.run_id, r.run.pipeline, shown_status(r), r.updated.strftime("%Y-%m-%d %H:%M"), r.run.repo)
        for r in records
    ]
    # Plain aligned columns, never wrapped or cut at the terminal's width (ids are what scripts copy).
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        sys.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4] + "\n")


@app.command()
def show(
    run_id: str,
    reports_dir: Path | None = REPORTS_DIR,
    fmt: str = typer.Option("text", "--format", help="text or json"),
    state: str | None = STATE,
) -> None:
    """Show one run: phases, changes and verdicts."""
    from agent_pipelines.engine.runs import UsageError, load_record, open_store, shown_status

    _check_format(fmt)
    try:
        with open_store(state) as store:
            record, paths = load_record(reports_dir, run_id, store)
    except UsageError as error:
        fail(str(error))
    if fmt == "json":
        sys.stdout.write(record.model_dump_json(indent=2) + "\n")
        return
    out.print(
        f"[bold]{record.run.run_id}[/bold] {record.run.pipeline} — {shown_status(record)} {record.error}",
        soft_wrap=True,
    )
    out.print(
        f"repo {record.run.repo}  branch {record.run.branch}  base {record.run.base_commit[:10]}  head "
        f"{record.head_commit[:10]}",
        soft_wrap=True,
    )
    tasks = {t.id: t for t in record.plan.tasks}
    table = Table()
    for column in ("phase", "task", "commit", "status", "reason"):
        table.add_column(column)
    for c in record.changes:
        table.add_row(
            c.phase,
            tasks[c.task_id].title if c.task_id in tasks else c.task_id,
            c.commit[:10],
            c.status.value,
            c.reason + (f"; instead: {c.action}" if c.action else ""),
        )
    out.print(table)
    out.print(f"reports: {paths.root}", soft_wrap=True)


def _known_phases(record, names: list[str]) -> None:
    """Phases the run doesn't have: refused before anything is fetched or locked."""
    unknown = [n for n in names if n not in record.run.phases]
    if unknown:
        fail(
            f"run {record.run.run_id} has no phase {', '.join(unknown)}; its phases are: {', '.join(record.run.phases)}"
        )


@app.command()
def apply(
    run_id: str,
    reports_dir: Path | None = REPORTS_DIR,
    phases: str | None = typer.Option(None, "--phases", help="Merge only these finished phases (comma-separated)."),
    force: bool = typer.Option(
        False, "--force", help="Merge even when the merged tree has new error findings (warns)."
    ),
    state: str | None = STATE,
    repo: Path | None = RUN_HERE,
) -> None:
    """Merge a finished run into your current branch: clean tree, nothing untracked overwritten, no new errors."""
    from agent_pipelines.engine.branches import apply_run
    from agent_pipelines.engine.runs import UsageError, load_record, locate, open_store
    from agent_pipelines.engine.workspace import RepoError

    chosen = [p.strip() for p in phases.split(",") if p.strip()] if phases else None
    try:
        with open_store(state) as store:
            record, paths = load_record(reports_dir, run_id, store)
            spec = _pipelines().get(record.run.pipeline)
            if spec is None:
                fail(f"run {run_id} used pipeline {record.run.pipeline!r}, which is not installed here")
            _known_phases(record, chosen or [])
            locate(record, paths, repo, store)
            message = apply_run(record, paths, spec, chosen, force, store)
    except (UsageError, RepoError) as error:
        fail(str(error))
    except OSError as error:
        os_fail(error, "retry")
    err.print(message, markup=False, highlight=False, soft_wrap=True)


@app.command()
def rollback(
    run_id: str,
    phase: str | None = typer.Option(None, "--phase", help="Remove this phase's commits and later ones."),
    reports_dir: Path | None = REPORTS_DIR,
    state: str | None = STATE,
    repo: Path | None = RUN_HERE,
) -> None:
    """Remove a run's commits (all, or from one phase on) from its branch."""
    from agent_pipelines.engine.branches import rollback_run
    from agent_pipelines.engine.runs import UsageError, load_record, locate, open_store
    from agent_pipelines.engine.workspace import RepoError

    try:
        with open_store(state) as store:
            record, paths = load_record(reports_dir, run_id, store)
            spec = _pipelines().get(record.run.pipeline)
            if spec is None:
                fail(f"run {run_id} used pipeline {record.run.pipeline!r}, which is not installed here")
            _known_phases(record, [phase] if phase is not None else [])
            locate(record, paths, repo, store)
            message = rollback_run(record, paths, spec, phase, store)
    except (UsageError, RepoError) as error:
        fail(str(error))
    except OSError as error:
        os_fail(error, "retry")
    err.print(message, markup=False, highlight=False, soft_wrap=True)


@app.command()
def prune(
    run_ids: list[str] | None = typer.Argument(None, help="Only these runs (default: every listed run)."),
    older_than: str | None = typer.Option(
        None, "--older-than", metavar="DURATION", help="Only runs last updated longer ago than this (7d, 12h, 30m)."
    ),
    force: bool = typer.Option(
        False, "--force", help="Also remove unmerged branches, resumable runs and runs whose repository is gone."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be removed; remove nothing."),
    reports_dir: Path | None = REPORTS_DIR,
    state: str | None = STATE,
) -> None:
    """Remove finished runs: their worktree, branch and reports, and with --state their record and checkpoints
    there (never an unmerged branch without --force)."""
    from agent_pipelines.engine.prune import parse_duration
    from agent_pipelines.engine.prune import prune as prune_runs
    from agent_pipelines.engine.runs import UsageError, open_store

    try:
        age = parse_duration(older_than) if older_than is not None else None
    except ValueError as error:
        fail(str(error))
    try:
        with open_store(state) as store:
            outcomes = prune_runs(reports_dir, age, force, run_ids, dry_run, store=store)
    except UsageError as error:
        fail(str(error))
    except OSError as error:
        os_fail(error, "retry")
    missing = sorted(set(run_ids or ()) - {o.run_id for o in outcomes})
    for outcome in outcomes:
        err.print(outcome.message, markup=False, highlight=False, soft_wrap=True)
    if missing:
        fail(
            f"no run {', '.join(missing)} to prune{'' if older_than is None else ' (or not older than ' + older_than + ')'}"
        )
    if not outcomes:
        err.print("nothing to prune", markup=False)


@app.command()
def pipelines(fmt: str = FORMAT) -> None:
    """List the installed pipelines, their phases and their own options."""
    _check_format(fmt)
    installed = sorted(_pipelines().items())
    if fmt == "json":

        def described(option) -> dict:
            return {
                "name": option.name,
                "flag": option.flags[0],
                "type": option.type.__name__,
                "default": option.default,
                "help": option.help,
                "choices": list(option.choices),
            }

        _print_json(
            [
                {
                    "name": name,
                    "description": spec.description,
                    "phases": [{"name": p.name, "title": p.title, "agents": list(p.agents)} for p in spec.phases],
                    "run_options": [described(o) for o in spec.options],
                    "analyze_options": [described(o) for o in spec.analyze_options],
                }
                for name, spec in installed
            ]
        )
        return
    table = Table()
    for column in ("pipeline", "phases", "description"):
        table.add_column(column)
    for name, spec in installed:
        table.add_row(name, " → ".join(f"{p.name} ({', '.join(p.agents)})" for p in spec.phases), spec.description)
    out.print(table)


@app.command()
def mcp(
    reports_dir: Path | None = REPORTS_DIR,
    pipeline: str | None = typer.Option(
        None, "--pipeline", help="The pipeline a tool call uses when it names none (default: the only one installed)."
    ),
    state: str | None = STATE,
) -> None:
    """Serve the analysis and runs to coding agents over stdio (Model Context Protocol)."""
    from agent_pipelines.engine.runs import UsageError, open_store

    if pipeline is not None:
        _pipeline(pipeline)
    try:
        with open_store(state):  # a URL it can't use is one line before the server starts, not an error per call
            pass
    except UsageError as error:
        fail(str(error))
    try:
        from agent_pipelines.engine.mcp_server import serve
    except ImportError as error:  # the SDK is an optional extra: a linter's users don't need its HTTP stack
        if (error.name or "").partition(".")[0] != "mcp":
            raise
        fail("`pipeline mcp` needs the MCP SDK: pip install 'agent-pipelines\\[mcp]'")  # \\[: not rich markup
    try:
        serve(reports_dir, pipeline, state)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command(add_help_option=False, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def analyze(ctx: typer.Context) -> None:
    """Analyze a directory and print the findings (no git, no changes); see `pipeline analyze --help`."""
    from agent_pipelines.engine.analyze_cli import main as analyze_main

    raise typer.Exit(analyze_main(ctx.args))
