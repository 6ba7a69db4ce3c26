"""Run the whole pipeline on real repositories and print what it did, side by side with `pipeline analyze`.

    python -m bench.real_repos /work/repos/otel /work/repos/awesome [--builds-check]

Each repository is copied to a temp directory (the run makes a worktree and a
branch in it), then `pipeline run docker-optimization --builds off` runs on
the copy. Printed per repository: findings at the base and at the branch head,
tasks, commits kept, reverted (with the failing gate and reason), failed,
skipped, the run's wall time, `pipeline analyze`'s wall time on the same tree,
and whether the summary's count equals `pipeline analyze` on the branch head.

``--builds-check`` (needs a Docker engine: ``eval "$(../shared/docker-sandbox/up.sh)"``):
every Dockerfile the run changed is built at the branch head under each
context that builds it, when all its base images exist on the engine; the
others are counted as "not checkable here" with the missing image.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pipeline(*args: str, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "agent_pipelines.engine.cli", *args], capture_output=True, text=True, env=env, cwd=cwd
    )
    return done, time.perf_counter() - started


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def run_one(source: Path, work: Path, builds_check: bool) -> dict:
    repo = work / source.name
    shutil.copytree(source, repo, symlinks=True, ignore=shutil.ignore_patterns("pipeline-worktrees"))
    reports = work / f"{source.name}-reports"
    done, run_s = _pipeline(
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
    )
    if done.returncode not in (0, 4):  # 4: finished with failed tasks (the record says which)
        return {"repo": source.name, "error": done.stderr.strip()[-500:]}
    record = json.loads(done.stdout)
    head = work / f"{source.name}-head"
    _git(repo, "worktree", "add", "-q", "--detach", str(head), record["run"]["branch"])
    analyzed, analyze_s = _pipeline("analyze", "--repo", str(head), "--format", "json", "--exit-zero")
    at_head = json.loads(analyzed.stdout)["findings"]
    statuses = Counter(c["status"] for c in record["changes"])
    reverted = Counter()
    for v in record["verdicts"]:
        if not v["accepted"]:
            for g in v["gates"]:
                if not g["passed"]:
                    reverted[f"{g['name'].split(' of ')[0]}: {g['detail'][:80]}"] += 1
    out = {
        "repo": source.name,
        "findings at base": len(record["findings"]),
        "only in working tree": len(record.get("worktree_findings") or []),
        "findings at head (run)": len(record["head_findings"] or []),
        "pipeline analyze at head": len(at_head),
        "tasks": len(record["plan"]["tasks"]),
        "kept": statuses["committed"],
        "reverted": statuses["reverted"],
        "failed": statuses["failed"],
        "skipped": statuses["skipped"],
        "run s": round(run_s, 1),
        "analyze s": round(analyze_s, 1),
        "reverted why": dict(reverted),
        "already broken (reported, kept)": sum(bool(g.get("already")) for v in record["verdicts"] for g in v["gates"]),
    }
    if builds_check:
        out["builds"] = check_builds(repo, head, record)
    return out


def check_builds(repo: Path, head: Path, record: dict) -> dict:
    """Build each changed Dockerfile at the head under each of its contexts, when its bases exist here."""
    sys.path.insert(0, str(ROOT))
    from agent_pipelines.engine.tree import DirTree
    from agent_pipelines.pipelines.docker_optimization.model.project import Project

    base = record["run"]["base_commit"]
    changed = set(_git(repo, "diff", "--name-only", base, record["run"]["branch"]).split())
    project = Project(DirTree(head))
    result = Counter()
    missing = Counter()
    for ctx in project.contexts:
        if ctx.dockerfile not in changed or ctx.dockerfile not in project.dockerfiles:
            continue
        df = project.dockerfiles[ctx.dockerfile]
        stages = {i.value[-1].lower() for i in df.of("FROM") if len(i.value) >= 3}
        images = [i.value[0] for i in df.of("FROM") if i.value and i.value[0].lower() not in stages]
        absent = [
            im
            for im in images
            if subprocess.run(["docker", "image", "inspect", im], capture_output=True).returncode != 0
        ]
        if absent:
            result["not checkable here (base image absent)"] += 1
            missing.update(absent)
            continue
        built = subprocess.run(
            ["docker", "build", "-q", "-f", str(head / ctx.dockerfile), str(head / ctx.dir)],
            capture_output=True,
            text=True,
        )
        result["built" if built.returncode == 0 else "FAILED"] += 1
    return {**result, "absent images": len(missing)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repos", nargs="+", type=Path)
    parser.add_argument("--builds-check", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="real-repos-") as tmp:
        for source in args.repos:
            print(json.dumps(run_one(source.resolve(), Path(tmp), args.builds_check), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
