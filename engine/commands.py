"""The ``pipeline`` commands (typer): run, resume, summary, list, show, pipelines, apply, rollback.

``pipeline analyze`` is dispatched before this module is imported (see
``engine.cli``); its typer command here only forwards, for ``--help`` listings
and for tests that drive the app in-process.

Heavy imports (LangGraph, the OpenAI SDK, GitPython) happen inside the
commands that need them, so ``pipeline analyze`` and ``pipeline --help``
start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Agent-driven optimization pipelines: analyze, fix through git, review, measure.")
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)

REPORTS_DIR = typer.Option(Path("reports"), "--reports-dir", help="Where run directories live.")
EXIT_TASKS_FAILED = 4   # the run finished, but a task or phase failed (declined tasks are not failures)


def fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def os_fail(error: OSError, then: str = "`pipeline resume RUN_ID` continues the run") -> None:
    """A full disk or a denied directory: one line and exit 1; run.json is written whole or not at all,
    so the run resumes once the cause is gone."""
    where = f" ({error.filename})" if error.filename else ""
    fail(f"{error.strerror or error}{where}; fix that, then {then}", 1)


def _pipelines():
    from engine.spec import PipelineLookupError, loaded_pipelines

    try:
        return loaded_pipelines()
    except PipelineLookupError as error:
        fail(str(error))


def _pipeline(name: str):
    from engine.spec import PipelineLookupError, find_pipeline

    try:
        return find_pipeline(name)
    except PipelineLookupError as error:
        fail(str(error))


class Progress:
    """Prints one line per node as it finishes; silent with --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.phase = ""
        self.status = None

    def __call__(self, kind: str, **data) -> None:
        if self.quiet:
            return
        if kind == "example":
            err.print(f"[dim]No --repo given: running on the bundled example, copied to[/dim] {data['repo']}")
        elif kind == "base":
            err.print(data["statement"], markup=False, highlight=False, soft_wrap=True)
        elif kind == "node_start":
            if data["phase"] != self.phase:
                self.phase = data["phase"]
                err.print(f"[bold]▶ {self.phase}[/bold]")
            self.status = err.status(f"  {data['agent']} working…")
            self.status.start()
        elif kind == "llm_down":
            self._stop()
            err.print(f"[yellow]![/yellow] {data['message']}", markup=True, highlight=False, soft_wrap=True)
        elif kind == "node_end":
            self._stop()
            mark = "[red]✗[/red]" if data.get("failed") else "[green]✓[/green]"
            err.print(f"  {mark} {data['agent']:<12} {data.get('summary', '')}")
        elif kind == "run_end":
            self._stop()

    def _stop(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


def _final(record, paths_root: Path, fmt: str, quiet: bool) -> None:
    if fmt == "json":
        out.print_json(record.model_dump_json())
    elif not quiet:
        failures = record.failures
        broke = sum(c.status.value == "failed" for c in record.changes)
        title = record.status
        if failures and record.status == "completed":
            title = "completed with " + (f"{broke} failed task{'s' if broke != 1 else ''}" if broke else "a failed phase")
        table = Table(title=f"run {record.run.run_id}: {title}")
        for column in ("phase", "status", "commits kept", "reverted", "declined", "failed"):
            table.add_column(column)
        for phase in record.phases:
            cs = [c for c in record.changes if c.phase == phase.phase]
            table.add_row(phase.title, record.phase_status(phase.phase), *(
                str(sum(c.status.value == s for c in cs)) for s in ("committed", "reverted", "declined", "failed")))
        err.print(table)
        if record.error:
            err.print(f"[red]{record.error}[/red]")
        if failures and record.status == "completed":
            err.print(f"[red]✗ failed: {', '.join(failures)}[/red] (the summary says why)")
        err.print(f"Summary: {paths_root / 'summary.md'}")
        err.print(f"Branch:  git -C {record.run.repo} log {record.run.branch}")
    if record.status == "failed":
        raise typer.Exit(1)
    if record.status == "completed" and record.failures:
        raise typer.Exit(EXIT_TASKS_FAILED)
    if record.status == "stopped":
        err.print(f"stopped, resumable: {record.error}")
        raise typer.Exit(3)


@app.command()
def run(
    pipeline: str = typer.Argument(..., help="Pipeline name (see `pipeline pipelines`)."),
    repo: Optional[Path] = typer.Option(None, "--repo", help="Git checkout to optimize (default: the bundled example)."),
    phases: Optional[str] = typer.Option(None, "--phases", help="Comma-separated phases to run (default: all)."),
    reports_dir: Path = REPORTS_DIR,
    unsafe_fixes: bool = typer.Option(False, "--unsafe-fixes", help="Also apply fixes marked unsafe."),
    builds: str = typer.Option("auto", "--builds", help="Real builds for figures: auto (when an engine answers) or off."),
    build_repeats: int = typer.Option(3, "--build-repeats", min=1, help="Builds per scenario (the median is reported)."),
    build_budget: float | None = typer.Option(None, "--build-budget", min=0, metavar="SECONDS",
                                              help="Stop the real builds after this many seconds (default: no "
                                                   "limit); what did not finish is reported not measured."),
    build_jobs: int | None = typer.Option(None, "--build-jobs", min=1, metavar="N",
                                          help="Real builds run at once (default: the engine's CPUs)."),
    verify_builds: bool = typer.Option(False, "--verify-builds", help="Reviewer builds and starts each changed image (HEALTHCHECK/probe) and rejects what fails."),
    llm: bool = typer.Option(False, "--llm", help="Agents also reason with an OpenAI-compatible model (OPENAI_API_KEY, OPENAI_BASE_URL)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name in LLM mode (default: $OPENAI_MODEL or gpt-4o-mini)."),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", min=0, help="Stop once this many USD are spent (checked before every model call)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=0, help="Stop once this many tokens are spent (checked before every model call)."),
    max_output_tokens: Optional[int] = typer.Option(None, "--llm-max-output-tokens", min=1, help="max_tokens sent with every request (default 4096)."),
    price_input: Optional[float] = typer.Option(None, "--price-input", min=0, help="USD per 1M input tokens, for a model without a known price."),
    price_output: Optional[float] = typer.Option(None, "--price-output", min=0, help="USD per 1M output tokens."),
    price_file: Optional[Path] = typer.Option(None, "--price-file", help='JSON prices: {"model": {"input": USD, "output": USD}} per 1M tokens.'),
    llm_timeout: Optional[float] = typer.Option(None, "--llm-timeout", min=0.1, help="Seconds a model request may take (default 60)."),
    llm_deadline: Optional[float] = typer.Option(None, "--llm-deadline", min=0, help="Seconds of model time for the whole invocation; then agents keep their own results."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    fmt: str = typer.Option("text", "--format", help="text, or json to print the run record."),
) -> None:
    """Run a pipeline on a repository; changes land as commits on branch pipeline/<run-id>."""
    if fmt not in ("text", "json"):
        fail(f"--format must be text or json, not {fmt!r}")
    spec = _pipeline(pipeline)
    from engine.runs import UsageError, start_run

    chosen = [p.strip() for p in phases.split(",") if p.strip()] if phases else None
    if builds not in ("auto", "off"):
        fail(f"--builds must be auto or off, not {builds!r}")
    options = {"unsafe_fixes": "1" if unsafe_fixes else "0", "builds": builds, "build_repeats": str(build_repeats),
               "verify_builds": "1" if verify_builds else "0", "llm": "1" if llm else "0",
               **_llm_options(model, max_cost, max_tokens, max_output_tokens=max_output_tokens, price_input=price_input,
                              price_output=price_output, price_file=price_file, llm_timeout=llm_timeout,
                              llm_deadline=llm_deadline),
               **({"build_budget": str(build_budget)} if build_budget is not None else {}),
               **({"build_jobs": str(build_jobs)} if build_jobs is not None else {})}
    try:
        record = start_run(spec, repo, reports_dir, chosen, options, Progress(quiet))
    except UsageError as error:
        fail(str(error))
    except OSError as error:
        os_fail(error)
    except KeyboardInterrupt:
        err.print("interrupted; `pipeline list` shows the run, `pipeline resume RUN_ID` continues it")
        raise typer.Exit(130)
    _final(record, Path(record.run.run_dir), fmt, quiet)


def _llm_options(model: Optional[str], max_cost: Optional[float], max_tokens: Optional[int], **more) -> dict[str, str]:
    """The LLM flags as run options (strings), leaving out those not given."""
    options = {"llm_model": model, "max_cost": max_cost, "max_tokens": max_tokens, **more}
    return {k: str(v) for k, v in options.items() if v is not None}


@app.command()
def resume(
    run_id: str = typer.Argument(..., help="The run to continue."),
    phase: Optional[str] = typer.Option(None, "--phase", help="Re-run this phase and the ones after it."),
    reports_dir: Path = REPORTS_DIR,
    max_cost: Optional[float] = typer.Option(None, "--max-cost", min=0, help="A new cost budget (USD) in LLM mode."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=0, help="A new token budget in LLM mode."),
    price_input: Optional[float] = typer.Option(None, "--price-input", min=0, help="USD per 1M input tokens."),
    price_output: Optional[float] = typer.Option(None, "--price-output", min=0, help="USD per 1M output tokens."),
    price_file: Optional[Path] = typer.Option(None, "--price-file", help="JSON prices per 1M tokens."),
    llm_timeout: Optional[float] = typer.Option(None, "--llm-timeout", min=0.1, help="Seconds a model request may take."),
    llm_deadline: Optional[float] = typer.Option(None, "--llm-deadline", min=0, help="Seconds of model time for this invocation."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Drop the model answers cached so far: ask again."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    fmt: str = typer.Option("text", "--format"),
) -> None:
    """Continue a failed or interrupted run, or re-run it from one phase."""
    from engine.runs import UsageError, resume_run

    try:
        record = resume_run(_pipelines(), reports_dir, run_id, phase, Progress(quiet),
                            _llm_options(None, max_cost, max_tokens, price_input=price_input, price_output=price_output,
                                         price_file=price_file, llm_timeout=llm_timeout, llm_deadline=llm_deadline),
                            no_cache=no_cache)
    except UsageError as error:
        fail(str(error))
    except OSError as error:
        os_fail(error)
    except KeyboardInterrupt:
        err.print(f"interrupted; `pipeline resume {run_id}` continues it")
        raise typer.Exit(130)
    _final(record, Path(record.run.run_dir), fmt, quiet)


@app.command()
def summary(run_id: str, reports_dir: Path = REPORTS_DIR) -> None:
    """Print, and rewrite, a run's execution summary from its run.json."""
    from engine.report import render_summary
    from engine.runs import UsageError, load_record, write_atomic

    try:
        record, paths = load_record(reports_dir, run_id)
    except UsageError as error:
        fail(str(error))
    text = render_summary(record)
    try:
        write_atomic(paths.summary, text)
    except OSError as error:
        os_fail(error, "retry")
    sys.stdout.write(text)


@app.command("list")
def list_runs(reports_dir: Path = REPORTS_DIR) -> None:
    """List the runs in the reports directory."""
    from engine.runs import list_records, shown_status

    table = Table()
    for column in ("run", "pipeline", "status", "updated", "repository"):
        table.add_column(column)
    for record in list_records(reports_dir):
        table.add_row(record.run.run_id, record.run.pipeline, shown_status(record),
                      record.updated.strftime("%Y-%m-%d %H:%M"), record.run.repo)
    out.print(table)


@app.command()
def show(run_id: str, reports_dir: Path = REPORTS_DIR,
         fmt: str = typer.Option("text", "--format", help="text or json")) -> None:
    """Show one run: phases, changes and verdicts."""
    from engine.runs import UsageError, load_record, shown_status

    try:
        record, paths = load_record(reports_dir, run_id)
    except UsageError as error:
        fail(str(error))
    if fmt == "json":
        out.print_json(record.model_dump_json())
        return
    out.print(f"[bold]{record.run.run_id}[/bold] {record.run.pipeline} — {shown_status(record)} {record.error}")
    out.print(f"repo {record.run.repo}  branch {record.run.branch}  base {record.run.base_commit[:10]}  head {record.head_commit[:10]}")
    tasks = {t.id: t for t in record.plan.tasks}
    table = Table()
    for column in ("phase", "task", "commit", "status", "reason"):
        table.add_column(column)
    for c in record.changes:
        table.add_row(c.phase, tasks[c.task_id].title if c.task_id in tasks else c.task_id, c.commit[:10],
                      c.status.value, c.reason + (f"; instead: {c.action}" if c.action else ""))
    out.print(table)
    out.print(f"reports: {paths.root}")


@app.command()
def apply(run_id: str, reports_dir: Path = REPORTS_DIR,
          phases: Optional[str] = typer.Option(None, "--phases", help="Merge only these finished phases (comma-separated)."),
          force: bool = typer.Option(False, "--force", help="Merge even when the merged tree has new error findings (warns).")) -> None:
    """Merge a finished run into your current branch: clean tree, nothing untracked overwritten, no new errors."""
    from engine.branches import apply_run
    from engine.runs import UsageError, load_record

    chosen = [p.strip() for p in phases.split(",") if p.strip()] if phases else None
    try:
        record, paths = load_record(reports_dir, run_id)
        spec = _pipelines().get(record.run.pipeline)
        if spec is None:
            fail(f"run {run_id} used pipeline {record.run.pipeline!r}, which is not installed here")
        message = apply_run(record, paths, spec, chosen, force)
    except UsageError as error:
        fail(str(error))
    except OSError as error:
        os_fail(error, "retry")
    err.print(message, markup=False, highlight=False, soft_wrap=True)


@app.command()
def rollback(run_id: str, phase: Optional[str] = typer.Option(None, "--phase", help="Remove this phase's commits and later ones."),
             reports_dir: Path = REPORTS_DIR) -> None:
    """Remove a run's commits (all, or from one phase on) from its branch."""
    from engine.branches import rollback_run
    from engine.runs import UsageError, load_record

    try:
        record, paths = load_record(reports_dir, run_id)
        err.print(rollback_run(record, paths, phase))
    except UsageError as error:
        fail(str(error))
    except OSError as error:
        os_fail(error, "retry")


@app.command()
def pipelines() -> None:
    """List the installed pipelines and their phases."""
    table = Table()
    for column in ("pipeline", "phases", "description"):
        table.add_column(column)
    for name, spec in sorted(_pipelines().items()):
        table.add_row(name, " → ".join(f"{p.name} ({', '.join(p.agents)})" for p in spec.phases), spec.description)
    out.print(table)


@app.command()
def mcp(reports_dir: Path = REPORTS_DIR,
        pipeline: Optional[str] = typer.Option(None, "--pipeline", help="The pipeline a tool call uses when it names "
                                               "none (default: the only one installed).")) -> None:
    """Serve the analysis and runs to coding agents over stdio (Model Context Protocol)."""
    if pipeline is not None:
        _pipeline(pipeline)
    try:
        from engine.mcp_server import serve
    except ImportError as error:   # the SDK is an optional extra: a linter's users don't need its HTTP stack
        if (error.name or "").partition(".")[0] != "mcp":
            raise
        fail("`pipeline mcp` needs the MCP SDK: pip install 'agent-pipelines\\[mcp]'")   # \\[: not rich markup
    try:
        serve(reports_dir, pipeline)
    except KeyboardInterrupt:
        raise typer.Exit(130)


@app.command(add_help_option=False, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def analyze(ctx: typer.Context) -> None:
    """Analyze a directory and print the findings (no git, no changes); see `pipeline analyze --help`."""
    from engine.analyze_cli import main as analyze_main

    raise typer.Exit(analyze_main(ctx.args))
