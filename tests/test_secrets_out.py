"""Secrets out of every output: a canary in every Dockerfile, compose and config position, then every file a run
and ``pipeline analyze`` write, and everything they print, is grepped for them (``bench.reliability.secrets_grep``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent_pipelines.engine.finding import Finding
from agent_pipelines.engine.redact import PLACEHOLDER
from bench.reliability import CANARIES, ROOT, secrets_grep


@pytest.mark.slow
def test_no_canary_reaches_any_file_a_run_or_analyze_writes_nor_the_terminal(tmp_path):
    result, leaks, masked = secrets_grep(tmp_path)

    assert leaks == {}, result.detail
    assert masked >= 3, result.detail  # the canaries were cited (and masked): run.json/state, JSON, SARIF at least


def test_a_finding_is_masked_when_made_whoever_makes_it():
    """hadolint's findings are made the same way; the id is a hash of the masked text, never of the secret."""
    made = Finding.make(
        rule="DL3020",
        name="use COPY",
        category="reliability",
        severity="error",
        source="hadolint",
        message="ADD https://user:cnry-add-0008@example.com/f.tgz: use COPY",
        file="Dockerfile",
        line=3,
        evidence="ARG NPM_TOKEN=cnry-arg-0001",
    )
    revived = Finding(**made.to_json())  # as a checkpoint or the analysis's child process gives it back

    assert "cnry" not in made.message + made.evidence and PLACEHOLDER.search(made.evidence)
    assert revived == made and revived.fingerprint == made.fingerprint


def test_the_mask_is_the_same_in_every_process_so_ids_and_fingerprints_are_stable():
    code = (
        "from agent_pipelines.engine.finding import Finding; f = Finding.make(rule='SE001', name='n', category='security', "
        "severity='error', message='m', file='Dockerfile', line=2, evidence='ENV API_KEY=cnry-env-0003'); "
        "print(f.id, f.fingerprint, f.evidence)"
    )
    runs = {
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }

    assert len(runs) == 1 and "cnry" not in runs.pop()


def test_every_canary_is_one_the_redactor_masks_in_its_own_line():
    from agent_pipelines.engine.redact import mask
    from bench.reliability import CANARY_FILES

    for text in CANARY_FILES.values():
        for line in text.splitlines():
            assert not any(c in mask(line) for c in CANARIES), line
