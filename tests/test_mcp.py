"""`pipeline mcp`, driven as a coding agent drives it: the official SDK's client, over stdio, against a child
process serving a copy of the example repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tests.conftest import ROOT, cli, git, make_repo, snapshot

mcp = pytest.importorskip("mcp", reason="the MCP SDK is the `mcp` extra: pip install -e '.[mcp]'")

READ_ONLY = {"analyze", "explain_rule", "plan_fixes", "list_runs", "show_run", "run_diff", "review_run"}


def server_params(reports: Path):
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    env["PYTHONPATH"] = str(ROOT)
    return mcp.StdioServerParameters(
        command=sys.executable,
        env=env,
        cwd=str(ROOT),
        args=["-m", "agent_pipelines.engine.cli", "mcp", "--reports-dir", str(reports)],
    )


def drive(reports: Path, agent):
    """Start the server, connect the SDK's client over stdio, and let ``agent(session)`` use it."""

    async def connected():
        async with (
            mcp.stdio_client(server_params(reports)) as (read, write),
            mcp.ClientSession(read, write, read_timeout_seconds=300) as session,
        ):
            await session.initialize()
            return await agent(session)

    return anyio.run(connected)


@pytest.mark.slow
def test_an_agent_analyzes_explains_plans_runs_and_reads_the_diff(example_repo, reports):
    repo = str(example_repo)
    before, head = snapshot(example_repo), git(example_repo, "rev-parse", "HEAD")
    printed = cli("analyze", "--repo", repo, "--format", "json", "--exit-zero")
    assert printed.returncode == 0, printed.stderr
    linted = json.loads(printed.stdout)

    async def agent(session):
        tools = {t.name: t for t in (await session.list_tools()).tools}
        analyzed = await session.call_tool("analyze", {"path": repo})
        ours = next(f for f in analyzed.structured_content["findings"] if f["source"] == "rules")
        explained = await session.call_tool("explain_rule", {"code": ours["rule"].lower()})
        unknown = await session.call_tool("explain_rule", {"code": "NOPE1"})
        planned = await session.call_tool("plan_fixes", {"path": repo})
        progress = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, total, message))

        ran = await session.call_tool("run_pipeline", {"repo": repo, "builds": "off"}, progress_callback=on_progress)
        assert not ran.is_error, ran.content[0].text
        run_id = ran.structured_content["run_id"]
        shown = await session.call_tool("show_run", {"run_id": run_id})
        diffed = await session.call_tool("run_diff", {"run_id": run_id})
        listed = await session.call_tool("list_runs", {})
        missing = await session.call_tool("show_run", {"run_id": "20990101-000000-0000"})
        return tools, analyzed, ours, explained, unknown, planned, ran, progress, shown, diffed, listed, missing

    tools, analyzed, ours, explained, unknown, planned, ran, progress, shown, diffed, listed, missing = drive(
        reports, agent
    )

    # The tools, and which of them a client may call without asking: all but the one that makes a run.
    assert set(tools) == READ_ONLY | {"run_pipeline"}
    assert {n for n, t in tools.items() if t.annotations.read_only_hint} == READ_ONLY
    run_tool = tools["run_pipeline"].annotations
    assert (run_tool.read_only_hint, run_tool.destructive_hint, run_tool.idempotent_hint) == (False, False, False)
    assert "repo" in tools["run_pipeline"].input_schema["required"]

    # analyze answers what `pipeline analyze --format json` prints; explain_rule gives a finding's rule's docs.
    assert analyzed.structured_content == linted
    assert explained.structured_content["doc"].startswith(f"### {ours['rule']}: {ours['name']}\n")
    assert unknown.is_error and "has no rule 'NOPE1'" in unknown.content[0].text

    # plan_fixes: tasks for those findings (nothing written: see the snapshot below).
    tasks = planned.structured_content["tasks"]
    assert tasks and {fid for t in tasks for fid in t["finding_ids"]} <= {f["id"] for f in linted["findings"]}

    # The run: a branch of its own; the user's checkout and HEAD untouched by it or by any other tool.
    run = ran.structured_content
    assert run["status"] == "completed" and run["branch"] == f"pipeline/{run['run_id']}"
    assert snapshot(example_repo) == before and git(example_repo, "rev-parse", "HEAD") == head
    assert git(example_repo, "rev-parse", run["branch"]) == run["head_commit"] != head
    # ... with a progress notification per agent as it finishes (the planner's says how many tasks).
    nodes = [n for p in run["record"]["phases"] for n in p["nodes"]]
    assert [(done, total) for done, total, _ in progress] == [(i, len(nodes)) for i in range(1, len(nodes) + 1)]
    assert progress[1][2] == f"analysis planner: {nodes[1]['summary']}"

    # show_run is `pipeline show --format json`; run_diff is git's diff of the branch against the run's base.
    printed = cli("show", run["run_id"], "--reports-dir", str(reports), "--format", "json")
    assert shown.structured_content["record"] == json.loads(printed.stdout)
    diff = diffed.structured_content
    assert diff["diff"] == git(example_repo, "diff", "--no-color", head, run["branch"], "--") + "\n"
    assert {f["path"] for f in diff["files"]} == set(
        git(example_repo, "diff", "--name-only", head, run["branch"]).splitlines()
    )
    assert [r["run_id"] for r in listed.structured_content["runs"]] == [run["run_id"]]
    assert missing.is_error and "no run '20990101-000000-0000' in " in missing.content[0].text


def test_a_run_on_a_directory_that_is_no_repository_is_a_tool_error(tmp_path, reports):
    plain = tmp_path / "plain"
    plain.mkdir()

    async def agent(session):
        return (
            await session.call_tool("run_pipeline", {"repo": str(plain), "builds": "off"}),
            await session.call_tool("analyze", {"path": str(tmp_path / "absent")}),
        )

    ran, analyzed = drive(reports, agent)
    assert ran.is_error and len(ran.content[0].text.splitlines()) == 1
    assert analyzed.is_error and analyzed.content[0].text.endswith(f"{tmp_path / 'absent'} is not a directory")
    assert not any(reports.iterdir())


def test_an_agent_reads_what_a_paused_run_waits_on_as_pipeline_review_gives_it(tmp_path, reports, monkeypatch):
    """review_run answers `pipeline review RUN --format json`; a run that waits on nothing is a tool error."""
    monkeypatch.setenv("PIPELINE_PLUGINS", "tests.fixture_pipelines.whitespace:PIPELINE")
    repo = make_repo(tmp_path / "repo", {"a.txt": "a  \n"})
    paused = cli("run", "text-hygiene", "--repo", str(repo), "--reports-dir", str(reports), "--review", "-q")
    assert paused.returncode == 5, paused.stderr  # awaiting review
    [run_id] = [p.name for p in reports.iterdir()]
    printed = cli("review", run_id, "--reports-dir", str(reports), "--format", "json")
    assert printed.returncode == 0, printed.stderr

    async def agent(session):
        return (
            await session.call_tool("review_run", {"run_id": run_id}),
            await session.call_tool("review_run", {"run_id": "20990101-000000-0000"}),
        )

    reviewed, missing = drive(reports, agent)
    assert reviewed.structured_content == json.loads(printed.stdout)
    [change] = reviewed.structured_content["changes"]
    assert change["files"] == ["a.txt"] and "+a\n" in change["diff"]
    assert missing.is_error and "no run '20990101-000000-0000'" in missing.content[0].text
    done = cli("approve", run_id, "--all", "--reports-dir", str(reports), "-q")
    assert done.returncode == 0, done.stderr
    finished = drive(reports, lambda session: session.call_tool("review_run", {"run_id": run_id}))
    assert finished.is_error and "is not awaiting review (it is completed)" in finished.content[0].text


def test_with_state_in_postgres_the_tools_see_the_databases_runs(tmp_path, reports, state_url, monkeypatch):
    """`pipeline mcp --state URL` (here PIPELINE_STATE_URL): list_runs and review_run read the shared database, so an
    agent on another machine (another reports directory) sees a run paused in CI."""
    monkeypatch.setenv("PIPELINE_PLUGINS", "tests.fixture_pipelines.whitespace:PIPELINE")
    monkeypatch.setenv("PIPELINE_STATE_URL", state_url)
    repo = make_repo(tmp_path / "repo", {"a.txt": "a  \n"})
    paused = cli("run", "text-hygiene", "--repo", str(repo), "--reports-dir", str(tmp_path / "ci"), "--review", "-q")
    assert paused.returncode == 5, paused.stderr
    [run_id] = [p.name for p in (tmp_path / "ci").iterdir()]
    printed = cli("review", run_id, "--reports-dir", str(reports), "--format", "json")
    assert printed.returncode == 0, printed.stderr

    async def agent(session):
        return await session.call_tool("list_runs", {}), await session.call_tool("review_run", {"run_id": run_id})

    listed, reviewed = drive(reports, agent)  # reports: empty, another machine's
    assert [(r["run_id"], r["status"]) for r in listed.structured_content["runs"]] == [(run_id, "awaiting review")]
    assert reviewed.structured_content == json.loads(printed.stdout)

    monkeypatch.setenv("PIPELINE_STATE_URL", "mysql://db/runs")
    refused = cli("mcp", "--reports-dir", str(reports))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "postgresql://" in refused.stderr


def test_without_the_sdk_the_command_says_how_to_install_it():
    code = "import sys; sys.modules['mcp'] = None; from agent_pipelines.engine.cli import main; sys.argv = ['pipeline', 'mcp']; main()"
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: `pipeline mcp` needs the MCP SDK: pip install 'agent-pipelines[mcp]'"


def test_analyze_does_not_import_the_sdk(example_repo):
    code = (
        "import sys; from agent_pipelines.engine.cli import main; "
        f"sys.argv = ['pipeline', 'analyze', '--repo', {str(example_repo)!r}, '--format', 'json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types', 'starlette')), "
        "file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.stderr.splitlines()[-1] == "[]"
