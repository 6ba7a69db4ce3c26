"""Analysis time against input size, and the inputs that made regexes backtrack (issue 13, item 3).

    python -m bench.linear [--ignore 1000,4000,16000,32000,100000] [--dockerfile 1000,4000,16000,50000]
                           [--files 10000,100000,300000] [--budget 60] [--hadolint] [--out DIR]

Each size is a fresh git repository in ``--out`` (a temp directory by default)
analysed by ``pipeline analyze --format json --no-cache`` in a child process
(``--no-hadolint`` unless ``--hadolint``: hadolint is a separate binary whose
own time on a 16k-line Dockerfile is about 40 s). It prints one line per size:
the input, the seconds, the CPU seconds and the CPU seconds per thousand units,
which stays flat when the time is linear. A series stops at the first size that exceeds
``--budget`` seconds (the later, larger ones would too).

The ReDoS cases are a 15-star glob (``*a*a...*b``) in a ``.dockerignore``, as a
COPY source, as a ``.pipeline.yaml`` per-file-ignore and in a ``.gitignore``,
each facing a directory whose 200-character name the glob almost matches:
with Python's backtracking ``re`` each ran for hours.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REDOS_GLOB = "*a" * 14 + "*b"
SERVICE = "a" * 200


def _git_repo(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@localhost",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@localhost",
    }
    for args in (["init", "-q"], ["add", "-A", "-f"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, env=env, capture_output=True)
    return root


def _dockerfile(lines: int) -> str:
    """A two-stage Dockerfile of about ``lines`` instructions: COPYs, RUNs, ENVs, WORKDIRs, USERs."""
    out = ["FROM python:3.12-slim AS build", "WORKDIR /src"]
    kinds = [
        "COPY src/f{i}.py /src/",
        "RUN echo step {i} && pip install --no-cache-dir pkg{i}",
        "ENV VAR{k}=value{i}",
        "RUN chown -R app /src/f{i}.py",
        "WORKDIR /src/d{k}",
        "USER app{k}",
    ]
    half = lines // 2
    for i in range(lines - 4):
        if i == half:
            out.append("FROM build AS final")
        out.append(kinds[i % len(kinds)].format(i=i % 50, k=i % 7))
    out.append('CMD ["python", "app.py"]')
    return "\n".join(out) + "\n"


def _sources() -> dict[str, str]:
    return {f"src/f{i}.py": f"print({i})\n" for i in range(50)}


def ignore_repo(root: Path, lines: int) -> Path:
    patterns = [f"dir{i % 97}/sub{i}/*.tmp" if i % 3 else f"**/cache{i}" for i in range(lines)]
    return _git_repo(root, {**_sources(), ".dockerignore": "\n".join(patterns) + "\n", "Dockerfile": _dockerfile(10)})


def dockerfile_repo(root: Path, lines: int) -> Path:
    return _git_repo(root, {**_sources(), "Dockerfile": _dockerfile(lines), ".dockerignore": "**/*.tmp\n"})


def files_repo(root: Path, count: int) -> Path:
    """``count`` files in directories of 1,000, a .dockerignore that excludes some; one git commit."""
    files = {
        "Dockerfile": "FROM python:3.12-slim\nCOPY . /app/\nUSER app\n",
        ".dockerignore": "**/*.log\nsrc/d1*/\n!src/d10/keep.py\n**/cache\n",
    }
    for i in range(count):
        files[f"src/d{i // 1000}/f{i}.{'log' if i % 10 == 0 else 'py'}"] = ""
    return _git_repo(root, files)


def redos_repo(root: Path, where: str) -> Path:
    files = {
        f"{SERVICE}/Dockerfile": "FROM python:3.12-slim\nCOPY . /app/\nUSER app\n",
        f"{SERVICE}/{SERVICE}": "x\n",
        f"{SERVICE}/.dockerignore": "*.tmp\n",
    }
    if where == "dockerignore":
        files[f"{SERVICE}/.dockerignore"] = f"**/{REDOS_GLOB}\n"
    elif where == "copy":
        files[f"{SERVICE}/Dockerfile"] = f"FROM python:3.12-slim\nCOPY {REDOS_GLOB} /app/\nUSER app\n"
    elif where == "pipeline.yaml":
        files[".pipeline.yaml"] = f"per-file-ignores:\n  '**/{REDOS_GLOB}': [SE001]\n"
    else:
        files[".gitignore"] = f"{REDOS_GLOB}\n"
    return _git_repo(root, files)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def analyze(repo: Path, hadolint: bool, timeout: float) -> tuple[float, str, float]:
    """Seconds ``pipeline analyze`` took on ``repo``, how it ended ("ok", "exit N" or "timeout") and its CPU seconds.

    The CPU time (user + system, of the child and the processes it forked) is what a loaded machine does not inflate.
    """
    command = [
        sys.executable,
        "-m",
        "agent_pipelines.engine.cli",
        "analyze",
        "--repo",
        str(repo),
        "--format",
        "json",
        "--no-cache",
        "--exit-zero",
    ]
    if not hadolint:
        command.append("--no-hadolint")
    start, cpu = time.perf_counter(), _children_cpu()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, "timeout", _children_cpu() - cpu
    status = "ok" if done.returncode in (0, 1) and done.stdout.lstrip().startswith("{") else f"exit {done.returncode}"
    return time.perf_counter() - start, status, _children_cpu() - cpu


def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ignore", default="1000,4000,16000,32000,100000", help=".dockerignore lines")
    parser.add_argument("--dockerfile", default="1000,4000,16000,50000", help="Dockerfile lines")
    parser.add_argument("--files", default="10000,100000,300000,1000000", help="files in the context")
    parser.add_argument("--budget", type=float, default=60.0, help="stop a series after a size takes longer")
    parser.add_argument("--redos-timeout", type=float, default=120.0, help="seconds before a ReDoS case counts as hung")
    parser.add_argument("--hadolint", action="store_true", help="also run hadolint (its own time dominates)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the repositories (default: a temp dir)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-linear-"))
    print(f"repositories in {out}", flush=True)

    print("\nReDoS inputs (the backtracking matcher ran for hours on each)", flush=True)
    for where in ("dockerignore", "copy", "pipeline.yaml", "gitignore"):
        repo = redos_repo(out / f"redos-{where}", where)
        seconds, status, cpu = analyze(repo, args.hadolint, args.redos_timeout)
        print(f"  {where:<14} {seconds:8.2f} s  (CPU {cpu:.2f} s)  {status}", flush=True)

    series = (
        ("ignore lines", _sizes(args.ignore), ignore_repo),
        ("Dockerfile lines", _sizes(args.dockerfile), dockerfile_repo),
        ("files", _sizes(args.files), files_repo),
    )
    for label, sizes, build in series:
        print(f"\n{label:>18} {'seconds':>9} {'CPU s':>9} {'CPU/1k':>9}", flush=True)
        for size in sizes:
            repo = build(out / f"{label.split()[0].lower()}-{size}", size)
            seconds, status, cpu = analyze(repo, args.hadolint, max(args.budget * 10, 600))
            print(f"{size:>18,} {seconds:9.2f} {cpu:9.2f} {cpu / size * 1000:9.3f}  {status}", flush=True)
            if seconds > args.budget:
                print(f"{'':>18} (over the {args.budget:.0f} s budget: larger sizes skipped)", flush=True)
                break


if __name__ == "__main__":
    main()
