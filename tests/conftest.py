"""Shared fixtures: real git repositories in temp dirs, the example repo, process and fd probes."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import pytest

from agent_pipelines.engine.gitenv import git_env
from agent_pipelines.engine.procs import descendants, open_fds  # noqa: F401 (tests import open_fds from here)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "monorepo"


def pytest_configure(config):
    # Ctrl-C reaches the tests' children as it would from a terminal. A shell starts `cmd &` with SIGINT ignored,
    # and an ignored SIGINT is inherited: the children's Python then never raises KeyboardInterrupt, and the
    # tests that send SIGINT wait out their timeouts instead.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config, items):
    # A docker test builds images: slow (`-m "not slow"` leaves them out of the quick loop).
    for item in items:
        if item.get_closest_marker("docker"):
            item.add_marker(pytest.mark.slow)
    # Files with the most slow tests first, each file's tests kept together (its module fixtures are made once): a
    # parallel run (pytest-xdist hands tests out in this order) starts the long ones early, not last.
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=git_env()
    ).stdout.strip()


def make_repo(path: Path, files: dict[str, str], message: str = "init") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    for rel, text in files.items():
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    git(path, "add", "--all", "--force")
    git(path, "commit", "--quiet", "-m", message)
    return path


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` except .git, with its bytes (a checkout's exact content)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            full = Path(dirpath) / name
            out[str(full.relative_to(path))] = full.read_bytes()
    return out


def child_processes(name: str = "git") -> list[str]:
    """Live descendants of this process whose command starts with ``name``."""
    return [cmd for cmd in descendants().values() if Path(cmd.split(" ")[0]).name.startswith(name)]


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: int = 120):
    """Run the real `pipeline` command in a child process."""
    # Child runs default to `--builds auto`: without an engine in their environment they stay fast and
    # offline; tests about real builds call start_run with {"builds": "auto"} themselves.
    full_env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "agent_pipelines.engine.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture(autouse=True)
def docker_engine_turn(request, tmp_path_factory):
    """Docker tests take the one engine in turn across pytest-xdist workers: some count what the engine holds
    (the containers and images a check left behind, by label), which another worker's build would add to."""
    if request.node.get_closest_marker("docker") is None or "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    # Each worker's base temp is a folder of the run's: its parent is shared by the workers of this run only.
    with open(tmp_path_factory.getbasetemp().parent / "docker-engine.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def cold_hadolint_cache() -> None:
    """Each test's hadolint runs start cold: a test counts hadolint processes (the run keeps results by text)."""
    from agent_pipelines.pipelines.docker_optimization import hadolint

    hadolint.forget()


@pytest.fixture(autouse=True)
def own_state_dir(tmp_path_factory, monkeypatch) -> Path:
    """Each test's runs are indexed in a state directory of its own, never the user's (children inherit it)."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state


@pytest.fixture
def example_repo(tmp_path: Path) -> Path:
    from agent_pipelines.engine.runs import materialize_example

    return materialize_example(EXAMPLE, tmp_path / "example")


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    path = tmp_path / "reports"
    path.mkdir()
    return path


@pytest.fixture
def docker_pipeline():
    from agent_pipelines.pipelines.docker_optimization import PIPELINE

    return PIPELINE


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A real PostgreSQL for the session, started from the `pgserver` package on a temp dir (a unix socket
    there, no port); tests that need it skip, saying why, where it can't start."""
    try:
        with warnings.catch_warnings():  # pgserver's platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pgserver
        import psycopg  # noqa: F401
        from langgraph.checkpoint.postgres import PostgresSaver  # noqa: F401
    except ImportError as err:
        pytest.skip(f"PostgreSQL tests need the test extra (pgserver, psycopg, langgraph-checkpoint-postgres): {err}")
    # a short path: the server's unix socket lives in its data directory (sockets are limited to ~100 bytes)
    base = Path(tempfile.mkdtemp(prefix="pgt-"))
    try:
        server = pgserver.get_server(base / "data", cleanup_mode="stop")
    except Exception as err:  # noqa: BLE001 (pgserver raises what initdb/pg_ctl give): say why, skip
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL from pgserver: {type(err).__name__}: {err}")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def state_url(postgres_server, request) -> str:
    """A fresh database on the session's PostgreSQL for one test: its URL (what `--state` takes)."""
    import re

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50] + "_" + os.urandom(3).hex()
    postgres_server.psql(f"CREATE DATABASE {name};")
    return postgres_server.get_uri(name)
