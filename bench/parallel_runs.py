"""Many runs at once against one PostgreSQL: runs per minute, database time per run, no lost or crossed state.

For each N (default 1, 4, 16): N copies of examples/monorepo (N repositories, so N repository locks), one fresh
database, and N `docker-optimization` runs started together, each in its own process (``--builds off``, offline).
Reported per N: wall time, runs per minute, the mean and max seconds each run spent waiting on the database
(checkpoints and records, counted by engine.store, less the (de)serialization inside those calls, which is
reported apart as "serialize"), and what was checked:

- every run completed, and the database holds exactly N run records, one per repository (nothing lost);
- each record names its own repository, and the latest checkpoint of each run's thread holds that run's
  context (its repository and branch): no state crossed between runs;
- every run's branch ends with the same tree as the others (identical inputs, identical work).

The server is a pgserver on a temp dir unless ``--state postgresql://...`` names one (each N then uses a new
database on it, which needs CREATEDB).

    python -m bench.parallel_runs                 # N = 1, 4, 16
    python -m bench.parallel_runs --n 1 --n 4 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(repo: str, reports: str, url: str) -> None:
    """One run in this process; prints what it needs the parent to check, as one JSON line."""
    from agent_pipelines.engine import store
    from agent_pipelines.engine.runs import start_run
    from agent_pipelines.pipelines.docker_optimization import PIPELINE

    started = time.perf_counter()
    record = start_run(PIPELINE, Path(repo), Path(reports), options={"builds": "off"}, state=url)
    print(
        json.dumps(
            {
                "run_id": record.run.run_id,
                "status": record.status,
                "repo": record.run.repo,
                "branch": record.run.branch,
                "seconds": time.perf_counter() - started,
                "db": store.DB_SECONDS,
            }
        )
    )


def _server(workdir: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver.get_server(workdir / "pg", cleanup_mode="stop")


def _new_database(admin_url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


def _tree(repo: str, branch: str) -> str:
    return subprocess.run(
        ["git", "-C", repo, "rev-parse", f"{branch}^{{tree}}"], capture_output=True, text=True, check=True
    ).stdout.strip()


def check(url: str, results: list[dict], n: int) -> list[str]:
    """What a lost or crossed state would show; [] when every run's state is its own and complete."""
    import psycopg
    from psycopg.rows import dict_row

    from agent_pipelines.engine.checkpoint import serializer
    from agent_pipelines.engine.store import _timed_saver

    problems = [f"run in {r['repo']} ended {r['status']}" for r in results if r["status"] != "completed"]
    with psycopg.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT run_id, repo, status, record FROM pipeline_runs").fetchall()
        if len(rows) != n:
            problems.append(f"{len(rows)} run records for {n} runs")
        by_id = {row["run_id"]: row for row in rows}
        saver = _timed_saver(conn, serializer())
        for result in results:
            row = by_id.get(result["run_id"])
            if row is None:
                problems.append(f"run {result['run_id']} has no record")
                continue
            if row["repo"] != result["repo"] or row["record"]["run"]["repo"] != result["repo"]:
                problems.append(f"run {result['run_id']}'s record names {row['repo']}, not {result['repo']}")
            if row["status"] != result["status"]:
                problems.append(f"run {result['run_id']}: record says {row['status']}, the run {result['status']}")
            latest = saver.get_tuple({"configurable": {"thread_id": result["run_id"]}})
            if latest is None:
                problems.append(f"run {result['run_id']} has no checkpoint")
                continue
            ctx = latest.checkpoint["channel_values"].get("run")
            if ctx is None or (ctx.run_id, ctx.repo, ctx.branch) != (
                result["run_id"],
                result["repo"],
                result["branch"],
            ):
                problems.append(f"run {result['run_id']}'s checkpoint holds another run's context: {ctx}")
    trees = {_tree(r["repo"], r["branch"]) for r in results if r["status"] == "completed"}
    if len(trees) > 1:
        problems.append(f"identical repositories ended with {len(trees)} different trees")
    return problems


def measure(n: int, workdir: Path, admin_url: str) -> dict:
    from agent_pipelines.engine.runs import materialize_example

    url = _new_database(admin_url, f"bench_parallel_{n}_{os.getpid()}")
    level = workdir / f"n{n}"
    repos = [materialize_example(ROOT / "examples" / "monorepo", level / f"repo{i}") for i in range(n)]
    env = {**{k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.parallel_runs", "--worker", str(repo), str(level / f"reports{i}"), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for i, repo in enumerate(repos)
    ]
    outputs = [proc.communicate() for proc in procs]
    wall = time.perf_counter() - started
    results, problems = [], []
    for proc, (out, err) in zip(procs, outputs):
        if proc.returncode != 0 or not out.strip():
            problems.append(f"a run's process exited {proc.returncode}: {err.strip()[-300:]}")
            continue
        results.append(json.loads(out.strip().splitlines()[-1]))
    if results:
        problems += check(url, results, n)
    # database time = the store's calls less the (de)serialization they run inside (this machine's CPU)
    db = [sum(v for k, v in r["db"].items() if k != "serialize") - r["db"].get("serialize", 0.0) for r in results]
    db = db or [0.0]
    ops = sorted({k for r in results for k in r["db"]})
    by_operation = {k: round(statistics.mean(r["db"].get(k, 0.0) for r in results), 3) for k in ops}
    return {
        "n": n,
        "wall_seconds": round(wall, 1),
        "runs_per_minute": round(len(results) / wall * 60, 2),
        "run_seconds_mean": round(statistics.mean([r["seconds"] for r in results] or [0.0]), 1),
        "db_seconds_per_run_mean": round(statistics.mean(db), 3),
        "db_seconds_per_run_max": round(max(db), 3),
        "seconds_per_run_by_operation": by_operation,
        "completed": sum(r["status"] == "completed" for r in results),
        "problems": problems,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="runs at once (repeatable; default 1, 4, 16)")
    parser.add_argument("--state", help="a postgresql:// URL of a server to use (default: a pgserver on a temp dir)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", nargs=3, metavar=("REPO", "REPORTS", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="pgbench-"))
    server = None
    try:
        if args.state:
            admin = args.state
        else:
            server = _server(workdir)
            admin = server.get_uri()
        rows = [measure(n, workdir, admin) for n in (args.n or [1, 4, 16])]
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=2))
    else:
        print(f"{'N':>3} {'wall s':>7} {'runs/min':>9} {'run s':>6} {'db s/run':>9} {'db max':>7}  checks")
        for r in rows:
            print(
                f"{r['n']:>3} {r['wall_seconds']:>7} {r['runs_per_minute']:>9} {r['run_seconds_mean']:>6} "
                f"{r['db_seconds_per_run_mean']:>9} {r['db_seconds_per_run_max']:>7}  "
                f"{'ok' if not r['problems'] else '; '.join(r['problems'])}"
            )
            print(f"{'':>3} per run: " + ", ".join(f"{k} {v}" for k, v in r["seconds_per_run_by_operation"].items()))
    return 1 if any(r["problems"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
