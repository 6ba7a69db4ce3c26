"""Signals always win: Ctrl-C stops the work whatever it is doing, and a run that is gone is shown so.

The Dockerfile parser is a Go extension: a KeyboardInterrupt raised inside it came out as a
SystemError (reported as "the parser failed") or was lost, and the run went on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from engine.artifacts import RunRecord
from engine.runs import list_records
from tests.conftest import ROOT, cli

# Parse a big Dockerfile again and again; exit 130 on the interrupt, 3 on any parse error.
PARSER = """
import sys
from pipelines.docker_optimization.dockerfile import Dockerfile
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
        proc = subprocess.Popen([sys.executable, "-c", PARSER], env={**os.environ, "PYTHONPATH": str(ROOT)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "parsing"
        time.sleep(0.1 + 0.07 * attempt)   # a different moment of the parse each time
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        outcomes.append((proc.returncode, out, err.strip().splitlines()[-1:]))

    assert [code for code, _, _ in outcomes] == [130] * 8, outcomes
    assert not any("parse error" in out for _, out, _ in outcomes)
