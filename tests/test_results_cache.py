"""`pipeline analyze`'s results cache never changes the output; a warm run re-runs only what changed."""

from __future__ import annotations

import shutil

import pytest

from agent_pipelines.engine.analyze_cli import main
from agent_pipelines.engine.tree import DirTree
from agent_pipelines.pipelines.docker_optimization.analysis import run_analysis
from agent_pipelines.pipelines.docker_optimization.results_cache import ResultsCache, cache_dir
from tests.conftest import EXAMPLE


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A cache of this test's own; PIPELINE_CACHE (which --cache/--no-cache set) restored afterwards."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PIPELINE_CACHE", "0")


def analyze_json(capsys, root, *extra: str) -> str:
    assert main(["--repo", str(root), "--format", "json", "--no-hadolint", "--exit-zero", *extra]) == 0
    return capsys.readouterr().out


def test_cold_warm_and_uncached_runs_print_the_same_document(tmp_path, capsys):
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    uncached = analyze_json(capsys, root)
    assert not list(cache_dir().glob("*.marshal"))  # off unless asked for
    cold = analyze_json(capsys, root, "--cache")
    assert list(cache_dir().glob("*.marshal"))
    warm = analyze_json(capsys, root, "--cache")
    assert uncached == cold == warm
    # after edits of every kind the cache reads (a Dockerfile, an ignore file, compose, a new secret, a pragma)
    dockerfile = root / "services/worker/Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "RUN apt-get install -y gcc\n# pipeline ignore=SZ001\n")
    (root / "services/web/.dockerignore").write_text("node_modules\n")
    compose = root / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("services:\n", "services:\n  cache:\n    image: redis\n", 1))
    (root / "services/api/.env").write_text("TOKEN=1\n")
    assert analyze_json(capsys, root, "--cache") == analyze_json(capsys, root, "--no-cache")


def test_a_warm_run_reruns_only_the_targets_whose_inputs_changed(tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    cold = ResultsCache(root)
    run_analysis(DirTree(root), cache=cold)
    assert cold.hits == 0 and cold.misses > 0
    path = root / "services/worker/Dockerfile"
    path.write_text(path.read_text() + "USER app\n")
    warm = ResultsCache(root)
    result = run_analysis(DirTree(root), cache=warm)
    # the Dockerfile's own rules, its context's, and the project rules that read Dockerfiles: not the rest
    assert 0 < warm.misses < warm.hits
    assert [f.id for f in result.findings] == [f.id for f in run_analysis(DirTree(root)).findings]


def test_an_unreadable_cache_is_no_cache(tmp_path, capsys):
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    expected = analyze_json(capsys, root, "--cache")
    for stored in cache_dir().glob("*.marshal"):
        stored.write_bytes(b"not a cache")
    assert analyze_json(capsys, root, "--cache") == expected
