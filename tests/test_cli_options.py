"""Pipelines declare their options; `pipeline run` and `pipeline analyze` make their flags from them.

The engine names no pipeline's option: docker-optimization declares --builds, --build-repeats,
--build-budget, --build-jobs, --verify-builds (run) and --hadolint (analyze); the test pipeline in
tests/fixture_pipelines declares --suffix. The old spellings keep working.
"""

from __future__ import annotations

import json

import pytest

from agent_pipelines.engine.spec import Option, OptionError, PipelineSpec
from tests.conftest import cli, make_repo

PLUGIN = {"PIPELINE_PLUGINS": "tests.fixture_pipelines.whitespace:PIPELINE"}


def test_an_option_checks_encodes_and_reads_back_its_typed_value():
    repeats = Option("build_repeats", int, 3, "Builds per scenario.", min=1)
    assert repeats.flags == ("--build-repeats",)
    assert repeats.check("2") == 2 and repeats.encode(2) == "2" and repeats.value({"build_repeats": "2"}) == 2
    assert repeats.value({}) == 3
    with pytest.raises(OptionError, match="--build-repeats must be at least 1, not 0"):
        repeats.check("0")
    verify = Option("verify_builds", bool, False)
    assert verify.flags == ("--verify-builds", "--no-verify-builds")
    assert verify.encode(True) == "1" and verify.value({"verify_builds": "1"}) is True and verify.value({}) is False
    builds = Option("builds", str, "auto", choices=("auto", "off"))
    with pytest.raises(OptionError, match="--builds must be auto or off, not 'sometimes'"):
        builds.check("sometimes")


def test_a_spec_refuses_two_options_of_one_name():
    with pytest.raises(ValueError, match="duplicate option names"):
        PipelineSpec(
            name="p",
            description="",
            phases=(),
            domain=lambda run: None,
            options=(Option("x", int, 1), Option("x", str, "")),
        )


def test_the_docker_pipelines_flags_land_in_the_run_as_before(example_repo, tmp_path):
    """--verify-builds and --no-verify-builds both work; the record keeps each value as the domain reads it."""
    done = cli(
        "run",
        "docker-optimization",
        "--repo",
        str(example_repo),
        "--reports-dir",
        str(tmp_path / "r"),
        "--phases",
        "compose",
        "--builds",
        "off",
        "--build-repeats",
        "2",
        "--build-jobs",
        "1",
        "--no-verify-builds",
        "--quiet",
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    options = json.loads(done.stdout)["run"]["options"]
    assert {k: options[k] for k in ("builds", "build_repeats", "build_jobs", "verify_builds")} == {
        "builds": "off",
        "build_repeats": "2",
        "build_jobs": "1",
        "verify_builds": "0",
    }
    assert "build_budget" not in options  # not given, no default: not kept


def test_another_pipeline_gets_its_own_flags_and_not_the_docker_ones(tmp_path):
    repo = make_repo(tmp_path / "repo", {"a.txt": "keep  \n", "b.md": "strip me  \n"})
    helped = cli("run", "text-hygiene", "--help", env={**PLUGIN, "COLUMNS": "200"})
    assert "--suffix" in helped.stdout and "--build-repeats" not in helped.stdout

    refused = cli("run", "text-hygiene", "--repo", str(repo), "--builds", "off", env=PLUGIN)
    assert refused.returncode == 2 and "No such option: --builds" in refused.stderr

    done = cli(
        "run",
        "text-hygiene",
        "--repo",
        str(repo),
        "--suffix",
        ".md",
        "--reports-dir",
        str(tmp_path / "r"),
        "--quiet",
        "--format",
        "json",
        env=PLUGIN,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["run"]["options"]["suffix"] == ".md"
    assert [c["files"] for c in record["changes"] if c["status"] == "committed"] == [["b.md"]]


def test_analyze_takes_the_pipelines_declared_switch_in_both_spellings(tmp_path):
    repo = make_repo(tmp_path / "repo", {"Dockerfile": "FROM debian:12.5\nUSER nobody\n"})
    off = cli("analyze", "--repo", str(repo), "--format", "json", "--no-hadolint")
    assert off.returncode == 0, off.stderr
    assert json.loads(off.stdout)["tools"]["hadolint"]["status"] == "off"
    helped = cli("analyze", "--help")
    assert "--hadolint, --no-hadolint" in helped.stdout and "--exit-zero" in helped.stdout
