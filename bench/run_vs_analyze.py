"""The whole `pipeline run --builds off` beside `pipeline analyze` on the same generated monorepo, in one go.

    python -m bench.run_vs_analyze --scale 1 [--scale 10] [--out /tmp/bench-run]

For each scale: the tree from bench/monorepo.py is committed to a fresh git
repository; `pipeline analyze` runs on it, then `pipeline run
docker-optimization --builds off` (a fresh copy each time, so the run starts
from the same base). Printed side by side: wall seconds, CPU seconds (user +
system of the child and everything it started, from getrusage), and what the
run did (commits kept, reverted, failed). Wall time depends on the machine's
load; the CPU column is the steadier figure. The issue's goals: the run at
scale 1 within 15 s on 2 idle cores, scale 10 within 10x that.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.monorepo import ensure

ROOT = Path(__file__).resolve().parent.parent


def _timed(args: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "agent_pipelines.engine.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done, wall, cpu


def _repo(tree: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(tree, dest, symlinks=True)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@localhost",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@localhost",
    }
    for args in (["init", "-q"], ["add", "-A", "--force"], ["commit", "-qm", "generated monorepo"]):
        subprocess.run(["git", "-C", str(dest), *args], check=True, env=env)
    return dest


def measure(scale: float, out: Path) -> dict:
    tree = Path(ensure(out / f"tree-{scale}", scale).root)
    repo = _repo(tree, out / f"repo-{scale}")
    analyzed, a_wall, a_cpu = _timed(["analyze", "--repo", str(repo), "--format", "json"])
    findings = len(json.loads(analyzed.stdout)["findings"]) if analyzed.returncode in (0, 1) else None
    reports = out / f"reports-{scale}"
    shutil.rmtree(reports, ignore_errors=True)
    ran, r_wall, r_cpu = _timed(
        [
            "run",
            "docker-optimization",
            "--repo",
            str(repo),
            "--builds",
            "off",
            "--reports-dir",
            str(reports),
            "--quiet",
            "--format",
            "json",
        ]
    )
    if ran.returncode != 0:
        return {"scale": scale, "error": ran.stderr.strip()[-400:]}
    record = json.loads(ran.stdout)
    statuses = Counter(c["status"] for c in record["changes"])
    return {
        "scale": scale,
        "analyze wall s": round(a_wall, 2),
        "analyze cpu s": round(a_cpu, 2),
        "findings": findings,
        "run wall s": round(r_wall, 1),
        "run cpu s": round(r_cpu, 1),
        "kept": statuses["committed"],
        "reverted": statuses["reverted"],
        "failed": statuses["failed"],
        "load avg": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, action="append")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-run-vs-analyze"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [measure(s, args.out) for s in (args.scale or [1.0])]
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
