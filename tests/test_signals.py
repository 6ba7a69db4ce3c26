"""Signals always win: Ctrl-C stops the work whatever it is doing, and a run that is gone is shown so.

The Dockerfile parser is a Go extension: a KeyboardInterrupt raised inside it came out as a
SystemError (reported as "the parser failed") or was lost, and the run went on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent_pipelines.engine.artifacts import RunRecord
from agent_pipelines.engine.runs import list_records
from tests.conftest import ROOT, cli

# Parse a big Dockerfile again and again; exit 130 on the interrupt, 3 on any parse error.
PARSER = """
import sys
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
text = "FROM alpine\\n" + "".join(f"RUN echo {i} && \\\\\\n  true {i}\\n" for i in range(20000))
print("parsing", flush=True)
try:
    while True:
        parsed = Dockerfile.parse("Dockerfile", text)
        if parsed.error or len(parsed.instructions) != 20001:
            print("parse error:", parsed.error, flush=True)
            sys.exit(3)
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_during_a_parse_always_stops_the_process_and_never_reads_as_a_parse_error():
    outcomes = []
    for attempt in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", PARSER],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout.readline().strip() == "parsing"
            time.sleep(0.1 + 0.07 * attempt)  # a different moment of the parse each time
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:  # a parse the interrupt missed must not loop on after the test
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        outcomes.append((proc.returncode, out, err.strip().splitlines()[-1:]))

    assert [code for code, _, _ in outcomes] == [130] * 8, outcomes
    assert not any("parse error" in out for _, out, _ in outcomes)


def start_paused(repo, reports, point: str) -> subprocess.Popen:
    """`pipeline run` on ``repo``, pausing at ``point`` (engine.graph.crash_point) for the test to signal it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PIPELINE_PAUSE_AT": f"{point}:60"}
    env.pop("DOCKER_HOST", None)
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
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_record(reports, proc: subprocess.Popen, status: str) -> RunRecord:
    deadline = time.time() + 120
    while time.time() < deadline:
        records = list_records(reports)
        if records and records[0].status == status:
            return records[0]
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.1)
    raise AssertionError(f"the run's record never said {status}")


def listed_status(reports, run_id: str) -> str:
    listing = cli("list", "--reports-dir", str(reports), "--format", "json")
    assert listing.returncode == 0, listing.stderr
    [row] = [run for run in json.loads(listing.stdout) if run["run_id"] == run_id]
    return row["status"]


def test_a_run_killed_before_its_worktree_exists_is_never_listed_as_running(example_repo, reports):
    from agent_pipelines.engine.runs import START_POINT

    proc = start_paused(example_repo, reports, START_POINT)
    try:
        record = wait_for_record(reports, proc, "interrupted")  # what the record says from its first moment
        assert record.pid == proc.pid
        assert listed_status(reports, record.run.run_id) == "running"  # its process is alive
        proc.kill()
        proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert listed_status(reports, record.run.run_id) == "interrupted"


def test_a_sigkilled_run_shows_as_stopped_resumable_even_when_its_pid_names_another_process(example_repo, reports):
    proc = start_paused(example_repo, reports, "analysis.planner")
    try:
        record = wait_for_record(reports, proc, "running")
        assert listed_status(reports, record.run.run_id) == "running"
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    run_id = record.run.run_id
    assert list_records(reports)[0].status == "running"  # the record could not say otherwise

    assert listed_status(reports, run_id) == "stopped (resumable)"
    shown = cli("show", run_id, "--reports-dir", str(reports), env={"COLUMNS": "300"})
    assert f"{run_id} docker-optimization — stopped (resumable)" in shown.stdout

    # The pid reused by an unrelated live process: its start time differs, the run still reads as stopped.
    unrelated = subprocess.Popen(["sleep", "60"])
    try:
        run_json = reports / run_id / "run.json"
        run_json.write_text(run_json.read_text().replace(f'"pid": {record.pid},', f'"pid": {unrelated.pid},'))
        assert list_records(reports)[0].pid == unrelated.pid
        assert listed_status(reports, run_id) == "stopped (resumable)"
    finally:
        unrelated.kill()
        unrelated.wait()


HOLDER = """
import subprocess, sys, time
from pathlib import Path
from agent_pipelines.engine.lock import RepoLock
from agent_pipelines.engine.procs import lead_group
lead_group()                                   # what `pipeline` does first
RepoLock(Path(sys.argv[1]), "killed-run").acquire()
child = subprocess.Popen(["sleep", "120"], stdout=subprocess.DEVNULL)   # a git or docker of the run's, still working
print(child.pid, flush=True)
time.sleep(120)
"""


def test_a_sigkilled_run_takes_its_children_with_it_and_holds_the_lock_until_they_are_gone(tmp_path):
    from agent_pipelines.engine.lock import Locked, RepoLock
    from agent_pipelines.engine.procs import group_members

    lock = tmp_path / "pipeline.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(holder.stdout.readline())
    assert child in group_members(holder.pid)  # the run leads its own group, and its child is in it
    holder.kill()
    holder.wait()
    holder.stdout.close()

    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            taken = RepoLock(lock, "next-run").acquire()
        except Locked:
            time.sleep(0.02)
            continue
        taken.release()
        break
    else:
        raise AssertionError("the lock was never released")
    # The next run got the lock only once the killed run's child was gone.
    assert not Path(f"/proc/{child}").exists() or "Z" == Path(f"/proc/{child}/stat").read_text().split(") ")[1][0]
