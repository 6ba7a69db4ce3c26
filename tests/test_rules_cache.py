"""CA001 (pip without a cache mount) and CA002 (cache mount defeated), and their fix."""

from __future__ import annotations

from tests.rulekit import codes, fixed

BARE = "FROM python:3.12-slim\nRUN pip install -r requirements.txt\n"
MOUNTED = "FROM python:3.12-slim\nRUN --mount=type=cache,target=/root/.cache/pip pip install -r r.txt\n"
DEFEATED = ("FROM python:3.12-slim\n"
            "# keep this comment\n"
            "RUN --mount=type=cache,target=/root/.cache/pip \\\n"
            "    pip install --no-cache-dir -r r.txt\n")


def test_ca001_triggers_on_pip_install_without_a_cache_mount(tmp_path):
    assert codes(tmp_path, {"Dockerfile": BARE}, "CA001") == [("Dockerfile", 2)]


def test_ca001_also_sees_python_m_pip_and_pip3(tmp_path):
    text = "FROM python:3.12\nRUN python3 -m pip install x\nRUN pip3 install y\n"
    assert codes(tmp_path, {"Dockerfile": text}, "CA001") == [("Dockerfile", 2), ("Dockerfile", 3)]


def test_ca001_is_quiet_when_the_mount_is_there(tmp_path):
    assert codes(tmp_path, {"Dockerfile": MOUNTED}, "CA001") == []


def test_ca002_triggers_on_no_cache_dir_beside_a_cache_mount(tmp_path):
    assert codes(tmp_path, {"Dockerfile": DEFEATED}, "CA002") == [("Dockerfile", 3)]


def test_ca002_is_quiet_without_a_mount(tmp_path):
    assert codes(tmp_path, {"Dockerfile": "FROM python:3.12\nRUN pip install --no-cache-dir x\n"}, "CA002") == []


def test_fix_adds_the_mount_and_drops_no_cache_dir_on_one_line(tmp_path):
    text = "FROM python:3.12-slim\nRUN pip install --no-cache-dir -r requirements.txt\nCMD [\"x\"]"
    assert fixed(tmp_path, {"Dockerfile": text}, "CA001") == {"Dockerfile": (
        "FROM python:3.12-slim\n"
        "RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt\n"
        "CMD [\"x\"]")}  # no final newline before, none after


def test_fix_on_a_continued_run_keeps_every_other_byte(tmp_path):
    assert fixed(tmp_path, {"Dockerfile": DEFEATED}, "CA002") == {"Dockerfile": (
        "FROM python:3.12-slim\n"
        "# keep this comment\n"
        "RUN --mount=type=cache,target=/root/.cache/pip \\\n"
        "    pip install -r r.txt\n")}


def test_fix_drops_a_line_that_held_only_the_flag_and_keeps_crlf(tmp_path):
    text = "FROM python:3.12\r\nRUN pip install \\\r\n    --no-cache-dir \\\r\n    flask\r\n"
    assert fixed(tmp_path, {"Dockerfile": text}, "CA001") == {"Dockerfile": (
        "FROM python:3.12\r\n"
        "RUN --mount=type=cache,target=/root/.cache/pip pip install \\\r\n"
        "    flask\r\n")}
