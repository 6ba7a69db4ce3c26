"""The repair loop's effect and cost: the same run with `--attempts 1` (no loop) and `--attempts 2` (the default).

    python -m bench.repair_loop [--out /tmp/bench-loop]

(a) The bundled example: `pipeline run docker-optimization --builds off`, once per setting, each on a fresh copy.
(b) The test pipeline `text-hygiene` (tests/fixture_pipelines/whitespace.py) on 10 `*.retry.txt` files (a first
attempt the reviewer rejects, a retry it accepts), 10 plain files and one `*.partial.txt` (a fix with no other
approach): what the loop changes when there is something to repair.

Printed per run: changes kept on the first attempt, kept after a repair, reverted; wall seconds; and the seconds
of the repair rounds' nodes (the implementer and reviewer runs after the first). Wall time depends on the machine's
load; the repair rounds' node time is the loop's own cost.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent_pipelines.engine.artifacts import RunRecord  # noqa: E402 (after the path insert)
from agent_pipelines.engine.report import repair_counts  # noqa: E402 (after the path insert)


def loop_seconds(record: RunRecord) -> float:
    """Seconds of the implementer and reviewer runs after each phase's first: the repair rounds."""
    total = 0.0
    for phase in record.phases:
        seen: set[str] = set()
        for node in phase.nodes:
            if node.agent in ("implementer", "reviewer") and node.node in seen and node.finished:
                total += (node.finished - node.started).total_seconds()
            seen.add(node.node)
    return total


def line(label: str, record: RunRecord, wall: float) -> str:
    counts = repair_counts(record.changes)
    return (
        f"{label:34} first try {counts['first try']:3}  after repair {counts['after repair']:3}  "
        f"reverted {counts['reverted']:3}  wall {wall:5.1f} s  repair rounds {loop_seconds(record):4.1f} s"
    )


def example(out: Path, attempts: int) -> str:
    reports = out / f"example-{attempts}"
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "agent_pipelines.engine.cli",
            "run",
            "docker-optimization",
            "--builds",
            "off",
            "--attempts",
            str(attempts),
            "--reports-dir",
            str(reports),
            "--quiet",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    wall = time.monotonic() - started
    [run_json] = reports.glob("*/run.json")
    return line(f"example, --attempts {attempts}", RunRecord.model_validate_json(run_json.read_text()), wall)


def fixture(out: Path, attempts: int) -> str:
    from agent_pipelines.engine.runs import start_run
    from tests.conftest import make_repo
    from tests.fixture_pipelines import whitespace

    files = {f"f{i}.retry.txt": "one  \ntwo  \n" for i in range(10)}
    files |= {f"g{i}.txt": "x  \n" for i in range(10)} | {"h.partial.txt": "a \nb \n"}
    repo = make_repo(out / f"fixture-{attempts}" / "repo", files)
    started = time.monotonic()
    record = start_run(
        whitespace.PIPELINE, repo, out / f"fixture-{attempts}" / "reports", None, {"attempts": str(attempts)}
    )
    return line(f"text-hygiene fixture, --attempts {attempts}", record, time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-loop-"))
    for attempts in (1, 2):
        print(example(out, attempts))
    for attempts in (1, 2):
        print(fixture(out, attempts))


if __name__ == "__main__":
    main()
