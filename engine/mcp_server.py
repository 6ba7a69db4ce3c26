"""`pipeline mcp`: the analysis and the runs, served to coding agents over stdio (Model Context Protocol).

Built on the official ``mcp`` SDK's ``MCPServer``. The tools, and what each may do:

- ``analyze``, ``explain_rule``, ``plan_fixes``, ``list_runs``, ``show_run``, ``run_diff``, ``review_run`` only read
  (annotated ``readOnlyHint``: a client may call them without asking the user);
- ``run_pipeline`` writes, through the same code as ``pipeline run``: a new branch and worktree per run,
  never the user's checkout, index or uncommitted work (annotated not destructive, not idempotent:
  each call makes a new run).

The engine knows no pipeline: the analysis, the plan and the rules' documentation come through the
``PipelineSpec``. A tool's failure (a path that is not a directory, a run that does not exist) comes back as
a tool error with one line saying why, never as a traceback.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from pathlib import Path
from typing import Annotated, Any

import anyio.from_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
# A run adds a branch, a worktree and a reports directory; it deletes and rewrites nothing of the user's.
RUNS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)

INSTRUCTIONS = """Static analysis and optimization runs for a repository.
Start with `analyze` (findings as JSON) and `explain_rule` for a finding's rule; `plan_fixes` shows the fixes a run
would make, without writing. `run_pipeline` makes them as commits on a new branch in a separate worktree (the
user's checkout is never touched); `show_run` and `run_diff` show what a run did. Merging is left to the user
(`pipeline apply RUN_ID`)."""

Path_ = Annotated[str, Field(description="Directory to work on: absolute, or relative to the server's directory.")]
PipelineName = Annotated[str | None, Field(description="Pipeline to use (default: the server's).")]
Phases = Annotated[list[str] | None, Field(description="Phases to plan or run (default: all of the pipeline's).")]
RunId = Annotated[str, Field(description="A run id, as run_pipeline or list_runs gives it.")]


class Progress:
    """A run's events as MCP progress notifications, one per agent that finishes (a client that sent no progress
    token gets none). Tools run in a worker thread; the notification is sent from the server's event loop."""

    def __init__(self, ctx: Context, total: int) -> None:
        self.ctx, self.total, self.done = ctx, total, 0

    def __call__(self, kind: str, **data) -> None:
        if kind != "node_end":
            return
        self.done += 1
        message = f"{data.get('phase', '')} {data.get('agent', '')}: {data.get('summary', '')}".strip()
        with contextlib.suppress(Exception):  # a client gone mid-run must not stop the run
            anyio.from_thread.run(self.ctx.report_progress, self.done, self.total, message)


class Tools:
    """The tools' bodies, bound to where runs live and the default pipeline (plain methods: tests may call them)."""

    def __init__(self, reports_dir: Path | None, pipeline: str | None = None, state: str | None = None) -> None:
        # None: the default place and the run index (engine.places), as the other commands use them
        self.reports_dir = Path(reports_dir).resolve() if reports_dir is not None else None
        self.pipeline = pipeline
        self.state = state  # where runs' state lives (engine.store): --state / PIPELINE_STATE_URL, as the CLI's

    # -- helpers -----------------------------------------------------------
    def spec(self, name: str | None):
        from agent_pipelines.engine.spec import PipelineLookupError, find_pipeline, loaded_pipelines

        try:
            chosen = name or self.pipeline
            if chosen:
                return find_pipeline(chosen)
            installed = loaded_pipelines()
        except PipelineLookupError as error:
            raise ToolError(str(error)) from None
        if len(installed) != 1:
            raise ToolError(f"name a pipeline: installed are {', '.join(sorted(installed)) or 'none'}")
        return next(iter(installed.values()))

    @staticmethod
    def directory(path: str) -> Path:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise ToolError(f"{path} is not a directory")
        return root.resolve()

    def record(self, run_id: str):
        from agent_pipelines.engine.runs import UsageError, load_record, open_store

        if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
            raise ToolError(f"{run_id!r} is not a run id; list_runs gives them")
        try:
            with open_store(self.state) as store:
                return load_record(self.reports_dir, run_id, store)
        except UsageError as error:
            raise ToolError(str(error)) from None

    @staticmethod
    def view(record) -> dict[str, Any]:
        """A run as the tools show it: where to look first, then the whole record (`pipeline show --format json`)."""
        from agent_pipelines.engine.runs import shown_status

        run = record.run
        return {
            "run_id": run.run_id,
            "status": shown_status(record),
            "error": record.error,
            "repo": run.repo,
            "branch": run.branch,
            "worktree": run.worktree,
            "base_commit": run.base_commit,
            "head_commit": record.head_commit,
            "summary": str(Path(run.run_dir) / "summary.md"),
            "record": record.model_dump(mode="json"),
        }

    # -- read-only -----------------------------------------------------------
    def analyze(
        self,
        path: Path_,
        options: Annotated[
            dict[str, Any] | None,
            Field(
                description="The pipeline's own analyze options by name (`pipeline pipelines --format json` lists "
                "them); the defaults, as `pipeline analyze` uses them, when not given."
            ),
        ] = None,
        pipeline: PipelineName = None,
    ) -> dict[str, Any]:
        """Analyze a directory (no git needed, nothing written): every finding with file, line, rule, severity and
        fix applicability, exactly the JSON `pipeline analyze --format json` prints."""
        from agent_pipelines.engine.analyze_cli import analysis_result
        from agent_pipelines.engine.findings_output import render

        spec, root = self.spec(pipeline), self.directory(path)
        return json.loads(render(analysis_result(spec, root, options), "json", root))

    def explain_rule(
        self,
        code: Annotated[str, Field(description="A rule code from a finding, such as its `rule`.")],
        pipeline: PipelineName = None,
    ) -> dict[str, Any]:
        """A rule's documentation (markdown): what it checks, why it matters, an example, what to write instead, and
        whether its fix is safe."""
        spec = self.spec(pipeline)
        docs = spec.rule_docs() if spec.rule_docs is not None else {}
        wanted = code.strip().upper()
        if wanted not in docs:
            known = ", ".join(sorted(docs)) or "none documented"
            raise ToolError(f"{spec.name} has no rule {code!r}; its rules: {known}")
        return {"pipeline": spec.name, "code": wanted, "doc": docs[wanted]}

    def plan_fixes(self, path: Path_, phases: Phases = None, pipeline: PipelineName = None) -> dict[str, Any]:
        """The tasks a run's planner makes for a directory, in order, each with its phase, file, rules and
        applicability (unsafe ones wait for unsafe_fixes); nothing is written. It plans the files as they are on
        disk; a run plans its repository's committed HEAD."""
        from agent_pipelines.engine.runs import UsageError, select_phases

        spec, root = self.spec(pipeline), self.directory(path)
        try:
            chosen = select_phases(spec, phases)
        except UsageError as error:
            raise ToolError(str(error)) from None
        domain = spec.domain(None)
        try:
            findings = domain.analyze(root, thorough=True)
            plan = domain.plan(findings, chosen, False, root)
        finally:
            domain.close()
        return {
            "pipeline": spec.name,
            "root": str(root),
            "phases": chosen,
            "findings": len(findings),
            **plan.model_dump(mode="json"),
        }

    def list_runs(self) -> dict[str, Any]:
        """The runs in the server's reports directory (default: every run of this user), oldest first."""
        from agent_pipelines.engine.places import default_reports_dir
        from agent_pipelines.engine.runs import UsageError, list_records, open_store, shown_status

        try:
            with open_store(self.state) as store:
                records = list_records(self.reports_dir, store)
        except UsageError as error:
            raise ToolError(str(error)) from None
        return {
            "reports_dir": str(self.reports_dir or default_reports_dir()),
            "runs": [
                {
                    "run_id": r.run.run_id,
                    "pipeline": r.run.pipeline,
                    "status": shown_status(r),
                    "repo": r.run.repo,
                    "branch": r.run.branch,
                    "updated": r.updated.isoformat(),
                }
                for r in records
            ],
        }

    def show_run(self, run_id: RunId) -> dict[str, Any]:
        """A run's status, branch and base, and its whole record: phases, tasks, commits, the reviewer's verdicts
        and the measured figures."""
        record, _ = self.record(run_id)
        return self.view(record)

    def review_run(self, run_id: RunId) -> dict[str, Any]:
        """What a run paused for review (`pipeline run --review`) waits on: each kept change's task, title, commit,
        attempt, the reviewer's gates (passed, failed, not verified, with the detail) and its diff, as
        `pipeline review RUN_ID --format json` gives them. Deciding stays with a person (`pipeline approve/reject`)."""
        from agent_pipelines.engine.approval import pending_review

        record, _ = self.record(run_id)
        if record.status != "awaiting review":
            raise ToolError(f"run {run_id} is not awaiting review (it is {record.status})")
        return pending_review(record)

    def run_diff(self, run_id: RunId) -> dict[str, Any]:
        """What a run changed: `git diff` of its branch against the commit it started from, and the files."""
        from agent_pipelines.engine.gitenv import git_env

        record, _ = self.record(run_id)
        run = record.run
        if not re.fullmatch(r"[0-9a-f]{40,64}", run.base_commit) or run.branch.startswith("-"):
            raise ToolError(f"run {run_id}'s record names no usable base commit and branch")

        def git(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                ["git", "-C", run.repo, *args], check=False, capture_output=True, text=True, env=git_env()
            )

        if not Path(run.repo).is_dir():
            raise ToolError(f"run {run_id}'s repository {run.repo} is gone (moved or deleted)")
        head = git("rev-parse", "--verify", "--quiet", "--end-of-options", f"refs/heads/{run.branch}^{{commit}}")
        if head.returncode != 0:
            raise ToolError(f"run {run_id}'s branch {run.branch} no longer exists in {run.repo} (deleted or pruned)")
        sha = head.stdout.strip()
        diff = git("diff", "--no-color", "--no-ext-diff", run.base_commit, sha, "--")
        names = git("diff", "--name-status", "--no-renames", run.base_commit, sha, "--")
        if diff.returncode != 0 or names.returncode != 0:
            raise ToolError(f"git diff failed in {run.repo}: {(diff.stderr or names.stderr).strip()}")
        files = [{"status": line[:1], "path": line[2:]} for line in names.stdout.splitlines() if line]
        return {
            "run_id": run.run_id,
            "branch": run.branch,
            "base_commit": run.base_commit,
            "head_commit": sha,
            "files": files,
            "diff": diff.stdout,
        }

    # -- writes ----------------------------------------------------------------
    def run_pipeline(
        self,
        repo: Annotated[
            str, Field(description="A git checkout (its committed HEAD is what runs; it is never modified).")
        ],
        phases: Phases = None,
        builds: Annotated[
            str,
            Field(
                description="auto: measure real builds when an engine answers "
                "(can take minutes); off: static figures only."
            ),
        ] = "auto",
        unsafe_fixes: Annotated[bool, Field(description="Also apply fixes marked unsafe.")] = False,
        verify_builds: Annotated[
            bool, Field(description="The reviewer builds each changed unit and reverts what fails.")
        ] = False,
        pipeline: PipelineName = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Run a pipeline on a repository, as `pipeline run` does: fixes land as reviewed commits on a new branch
        pipeline/<run-id> in a separate worktree; the user's checkout, index and uncommitted work are never touched.
        Returns the run (show_run's answer); run_diff shows its changes, `pipeline apply RUN_ID` merges them."""
        from agent_pipelines.engine.runs import UsageError, select_phases, start_run

        spec = self.spec(pipeline)
        if builds not in ("auto", "off"):
            raise ToolError(f"builds must be auto or off, not {builds!r}")
        root = self.directory(repo)
        options = {
            "unsafe_fixes": "1" if unsafe_fixes else "0",
            "builds": builds,
            "build_repeats": "3",
            "verify_builds": "1" if verify_builds else "0",
            "llm": "0",
        }
        try:
            chosen = select_phases(spec, phases)
            total = sum(len(p.agents) for p in spec.phases if p.name in chosen)
            progress = Progress(ctx, total) if ctx is not None else (lambda *_a, **_k: None)
            record = start_run(spec, root, self.reports_dir, chosen, options, progress, state=self.state)
        except UsageError as error:
            raise ToolError(str(error)) from None
        except OSError as error:
            raise ToolError(
                f"{error.strerror or error} ({error.filename}); fix that, then "
                "`pipeline resume RUN_ID` continues the run"
            ) from None
        return self.view(record)


def server(reports_dir: Path | None, pipeline: str | None = None, state: str | None = None) -> MCPServer:
    """The MCP server with every tool registered (``Tools`` does the work)."""
    from agent_pipelines.engine.findings_output import _version

    tools = Tools(reports_dir, pipeline, state)
    app = MCPServer("pipeline", instructions=INSTRUCTIONS, version=_version(), log_level="WARNING")
    for fn in (
        tools.analyze,
        tools.explain_rule,
        tools.plan_fixes,
        tools.list_runs,
        tools.show_run,
        tools.run_diff,
        tools.review_run,
    ):
        app.add_tool(fn, annotations=READ_ONLY, structured_output=True)
    app.add_tool(tools.run_pipeline, annotations=RUNS, structured_output=True)
    return app


def serve(reports_dir: Path | None, pipeline: str | None = None, state: str | None = None) -> None:
    """Serve over stdio until the client closes the connection."""
    server(reports_dir, pipeline, state).run("stdio")
