"""The reliability bench runs from the README's install (no pytest) and reports what happened, not what it hoped."""

from __future__ import annotations

import subprocess
import sys

from bench.reliability import ROOT, _timed_case, huge_dockerfile


def test_the_bench_and_its_leak_probes_need_no_pytest():
    code = (
        "import sys; sys.modules['pytest'] = None; import bench.reliability as b; "
        "print(len(b.open_fds()) > 0, b.live_children() == [])"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


def test_an_analysis_that_finishes_in_time_passes_with_its_exit_code_and_time(tmp_path):
    (tmp_path / "Dockerfile").write_text(huge_dockerfile(200))

    got = _timed_case("200-line Dockerfile", tmp_path, limit=120)

    assert got.passed and got.detail.startswith(("exit 0 after", "exit 1 after")), got.detail
    assert got.detail.endswith("(limit 120 s)") and got.seconds > 0


def test_sigint_to_analyze_while_hadolint_runs_exits_130_and_leaves_no_process(tmp_path):
    from bench.reliability import sigint_during_hadolint

    got = sigint_during_hadolint(tmp_path, 4000, "analyze")  # hadolint needs ~10 s for 4,000 lines

    assert got.passed, got.detail
    assert "while hadolint ran: exit 130" in got.detail and "0 process(es) of its group left" in got.detail
