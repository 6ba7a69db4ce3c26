"""RL001..RL006 (health checks, swallowed errors, remote frontends, unpinned bases), their fixes, image_tools."""

from __future__ import annotations

import os
import stat

import pytest

from agent_pipelines.engine.domain import Declined, FixError
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
from agent_pipelines.pipelines.docker_optimization.model.image_tools import tools_in_final_stage
from tests.rulekit import BILLING, codes, fixed

PROBE = (
    '["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('
    "'http://localhost:8100/health', timeout={t}).status < 400 else 1)\"]"
)


# -- image_tools ---------------------------------------------------------------
def tools(text: str):
    return tools_in_final_stage(Dockerfile.parse("Dockerfile", text))


def test_image_tools_reads_the_base_family_table():
    assert tools("FROM python:3.11-slim\n").has("curl") is False
    assert tools("FROM python:3.11-slim\n").has("python") is True
    assert tools("FROM python:3.12\n").has("curl") is True  # buildpack-deps based
    assert tools("FROM debian:bookworm-slim\n").has("wget") is False
    assert tools("FROM alpine:3.19\n").has("wget") is True  # busybox
    assert tools("FROM alpine:3.19\n").has("curl") is False
    assert tools("FROM docker.io/library/node:20-slim\n").has("node") is True
    assert tools("FROM registry.example.com/base:1\n").has("curl") is None  # unknown is not absent


def test_image_tools_follows_installs_removals_stages_and_arg_defaults():
    text = (
        "ARG PY=3.12\n"
        "FROM python:${PY}-slim AS base\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends curl=7.88.1-10 \\\n"
        "    && rm -rf /var/lib/apt/lists/*\n"
        "FROM base\n"
        "RUN apk add --no-cache --virtual .build wget gcc && make && apk del .build\n"
        "COPY --from=tools /usr/bin/jq /usr/local/bin/jq\n"
    )
    found = tools(text)
    assert (found.image, found.family, found.os) == ("python:3.12-slim", "python-slim", "debian")
    assert [found.has(p) for p in ("curl", "wget", "jq", "python")] == [True, False, True, True]


def test_image_tools_answers_none_after_a_whole_bin_directory_is_copied():
    assert tools("FROM debian:12\nCOPY --from=b /usr/local/bin/ /usr/local/bin/\n").has("curl") is None


# -- RL001 ---------------------------------------------------------------------
def test_rl001_triggers_on_curl_in_a_slim_python_image(tmp_path):
    assert codes(tmp_path, {"Dockerfile": BILLING}, "RL001") == [("Dockerfile", 7)]


def test_rl001_triggers_on_curl_in_alpine_but_not_on_busybox_wget(tmp_path):
    curl = 'FROM alpine:3.19\nHEALTHCHECK CMD ["curl", "-f", "http://localhost/"]\n'
    wget = "FROM alpine:3.19\nHEALTHCHECK CMD wget -q -O /dev/null http://localhost/ || exit 1\n"
    assert codes(tmp_path, {"a/Dockerfile": curl, "b/Dockerfile": wget}, "RL001") == [("a/Dockerfile", 2)]


def test_rl001_is_quiet_when_the_final_stage_installs_the_tool(tmp_path):
    text = (
        "FROM python:3.12-slim\n"
        "RUN apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*\n"
        "HEALTHCHECK CMD curl -f http://localhost:8000/ || exit 1\n"
    )
    assert codes(tmp_path, {"Dockerfile": text}, "RL001") == []


def test_rl001_triggers_when_only_the_builder_stage_installs_it(tmp_path):
    text = (
        "FROM python:3.12 AS build\n"
        "RUN apt-get install -y curl\n"
        "FROM python:3.12-slim\n"
        "HEALTHCHECK CMD curl -f http://localhost:8000/ || exit 1\n"
    )
    assert codes(tmp_path, {"Dockerfile": text}, "RL001") == [("Dockerfile", 4)]


def test_rl001_is_quiet_on_full_images_and_unknown_bases(tmp_path):
    full = "FROM python:3.12\nHEALTHCHECK CMD curl -f http://localhost/\n"
    unknown = "FROM ghcr.io/acme/base:1\nHEALTHCHECK CMD curl -f http://localhost/\n"
    assert codes(tmp_path, {"a/Dockerfile": full, "b/Dockerfile": unknown}, "RL001") == []


def test_fix_rewrites_the_billing_health_check_to_a_python_probe(tmp_path):
    # curl had no timeout: the probe's is Docker's own HEALTHCHECK default (30 s), not a figure of ours
    assert fixed(tmp_path, {"Dockerfile": BILLING}, "RL001") == {
        "Dockerfile": BILLING.replace(
            "HEALTHCHECK CMD curl -f http://localhost:8100/health || exit 1\n",
            "HEALTHCHECK CMD " + PROBE.format(t=30) + "\n",
        )
    }


def test_without_a_curl_timeout_the_probe_takes_the_healthcheck_timeout(tmp_path):
    text = "FROM python:3.12-slim\nHEALTHCHECK --timeout=1m30s CMD curl -f http://localhost:8100/health\n"
    assert fixed(tmp_path, {"Dockerfile": text}, "RL001") == {
        "Dockerfile": ("FROM python:3.12-slim\nHEALTHCHECK --timeout=1m30s CMD " + PROBE.format(t=90) + "\n")
    }


def test_fix_keeps_options_carries_the_timeout_and_joins_a_continued_crlf_instruction(tmp_path):
    text = (
        "FROM python:3.11-slim\r\n"
        "# probe\r\n"
        "HEALTHCHECK --interval=30s --timeout=5s \\\r\n"
        "    CMD curl -fsS --max-time 2 localhost:8100/health || exit 1\r\n"
        'CMD ["python"]'
    )
    assert fixed(tmp_path, {"Dockerfile": text}, "RL001") == {
        "Dockerfile": (
            "FROM python:3.11-slim\r\n"
            "# probe\r\n"
            "HEALTHCHECK --interval=30s --timeout=5s CMD " + PROBE.format(t=2) + "\r\n"
            'CMD ["python"]'
        )
    }


def test_fix_uses_node_when_the_image_has_node_and_no_python(tmp_path):
    text = "FROM node:20-slim\nHEALTHCHECK CMD wget -qO- http://localhost:3000/healthz || exit 1\n"
    assert fixed(tmp_path, {"Dockerfile": text}, "RL001") == {
        "Dockerfile": (
            "FROM node:20-slim\n"
            'HEALTHCHECK CMD ["node", "-e", "require(\'http\').get(\'http://localhost:3000/healthz\', {timeout: 30000}, '
            "r => process.exit(r.statusCode < 400 ? 0 : 1)).on('error', () => process.exit(1))"
            ".on('timeout', () => process.exit(1))\"]\n"
        )
    }


@pytest.mark.parametrize(
    "text, reason",
    [
        ("FROM debian:12-slim\nHEALTHCHECK CMD curl -f http://localhost/\n", "neither curl nor python or node"),
        ("FROM python:3.12-slim\nHEALTHCHECK CMD curl -f -H 'Host: a' http://localhost/\n", "option -H"),
        ("FROM python:3.12-slim\nHEALTHCHECK CMD curl -f http://localhost:$PORT/\n", "shell syntax"),
    ],
)
def test_fix_refuses_what_it_cant_translate(tmp_path, text, reason):
    with pytest.raises(FixError, match=reason):
        fixed(tmp_path, {"Dockerfile": text}, "RL001")


# -- RL002 ---------------------------------------------------------------------
def test_rl002_triggers_on_the_expose_of_an_image_without_a_healthcheck(tmp_path):
    text = 'FROM python:3.12-slim\nEXPOSE 8000\nCMD ["python"]\n'
    assert codes(tmp_path, {"Dockerfile": text}, "RL002") == [("Dockerfile", 2)]


def test_rl002_triggers_on_the_final_from_when_compose_publishes_the_port(tmp_path):
    files = {
        "api/Dockerfile": 'FROM python:3.12 AS b\nFROM python:3.12-slim\nCMD ["x"]\n',
        "compose.yaml": "services:\n  api:\n    build: ./api\n    ports: ['8000:8000']\n",
    }
    assert codes(tmp_path, files, "RL002") == [("api/Dockerfile", 2)]


def test_rl002_is_quiet_with_a_healthcheck_none_a_compose_healthcheck_or_no_port(tmp_path):
    files = {
        "a/Dockerfile": "FROM python:3.12-slim\nEXPOSE 80\nHEALTHCHECK NONE\n",
        "b/Dockerfile": "FROM python:3.12-slim\nEXPOSE 80\n",
        "c/Dockerfile": 'FROM python:3.12-slim\nCMD ["worker"]\n',
        "compose.yaml": "services:\n  b:\n    build: ./b\n    healthcheck:\n      test: [CMD, true]\n",
    }
    assert codes(tmp_path, files, "RL002") == []


def test_rl002_leaves_a_dockerfile_a_variable_build_path_may_name_to_that_build(tmp_path):
    compose = (
        "services:\n"
        "  ad:\n    build:\n      context: .\n      dockerfile: ${AD_DOCKERFILE}\n"
        "    healthcheck: {test: [CMD, grpc_health_probe]}\n"
        "  web:\n    build: ./web\n    ports: ['80:80']\n"
    )
    files = {
        "compose.yaml": compose,
        "src/ad/Dockerfile": "FROM eclipse-temurin:21\nEXPOSE 9555\n",
        "web/Dockerfile": "FROM nginx:1.27\n",
    }
    assert codes(tmp_path, files, "RL002") == [("web/Dockerfile", 1)]


# -- RL003 ---------------------------------------------------------------------
def test_rl003_triggers_on_each_way_of_swallowing_an_error(tmp_path):
    text = (
        "FROM debian:12\n"
        "RUN apt-get install -y libpq5 || true\n"
        'RUN make test || echo "tests failed"\n'
        "RUN ./seed-db || :\n"
        "RUN ./migrate; true\n"
        "RUN set +e && ./flaky\n"
    )
    assert codes(tmp_path, {"Dockerfile": text}, "RL003") == [("Dockerfile", n) for n in (2, 3, 4, 5, 6)]


def test_rl003_is_quiet_on_real_error_handling_and_healthcheck_exit(tmp_path):
    text = (
        "FROM debian:12\n"
        "RUN test -f /etc/os-release || exit 1\n"
        "RUN ./build || (echo 'build failed' >&2; exit 1)\n"
        "RUN set -eux; ./configure\n"
        "HEALTHCHECK CMD curl -f http://localhost/ || exit 1\n"
    )
    assert codes(tmp_path, {"Dockerfile": text}, "RL003") == []


def test_rl003_is_quiet_on_a_deliberate_ignore_after_a_cleanup_or_in_a_fallback_value(tmp_path):
    text = (
        "FROM debian:12\n"
        "RUN rm -rf /tmp/build || true\n"
        "RUN ./build; apt-get clean || :\n"
        "RUN pip cache purge || true\n"
        "RUN make -j$(nproc || sysctl -n hw.ncpu || echo 1) install\n"
        "RUN cd src && (find . -name '*.o' -delete || true) && make\n"
    )
    assert codes(tmp_path, {"Dockerfile": text}, "RL003") == []


def test_rl003_still_triggers_when_the_ignore_covers_more_than_the_cleanup(tmp_path):
    text = (
        "FROM debian:12\n"
        "RUN apt-get install -y libpq5 && apt-get clean || true\n"
        "RUN curl -fsSLo /app.tgz https://example.com/app.tgz || rm -f /app.tgz || true\n"
        "RUN echo $(cat /version || echo unknown) > /v; ./migrate || true\n"
    )
    assert codes(tmp_path, {"Dockerfile": text}, "RL003") == [("Dockerfile", n) for n in (2, 3, 4)]


# -- RL004 ---------------------------------------------------------------------
def test_rl004_triggers_on_a_syntax_directive_even_after_another_directive(tmp_path):
    files = {
        "a/Dockerfile": "# syntax=docker/dockerfile:1\nFROM alpine:3.19\n",
        "b/Dockerfile": "# escape=`\n#syntax = docker/dockerfile:1.7\nFROM alpine:3.19\n",
    }
    assert codes(tmp_path, files, "RL004") == [("a/Dockerfile", 1), ("b/Dockerfile", 2)]


def test_rl004_is_quiet_when_the_line_is_only_a_comment(tmp_path):
    text = "# Build the api.\n# syntax=docker/dockerfile:1\nFROM alpine:3.19\n"
    assert codes(tmp_path, {"Dockerfile": text}, "RL004") == []


def test_unsafe_fix_removes_the_directive_line_only(tmp_path):
    text = "# syntax=docker/dockerfile:1\r\n# check=error=true\r\nFROM alpine:3.19\r\n"
    assert fixed(tmp_path, {"Dockerfile": text}, "RL004") == {
        "Dockerfile": "# check=error=true\r\nFROM alpine:3.19\r\n"
    }


def test_unsafe_fix_leaves_labs_and_third_party_frontends(tmp_path):
    with pytest.raises(FixError, match="labs channel"):
        fixed(tmp_path / "a", {"Dockerfile": "# syntax=docker/dockerfile:1-labs\nFROM alpine\n"}, "RL004")
    with pytest.raises(FixError, match="not the official"):
        fixed(tmp_path / "b", {"Dockerfile": "# syntax=ghcr.io/acme/frontend:2\nFROM alpine\n"}, "RL004")


# -- RL005 / RL006 -------------------------------------------------------------
FROMS = (
    "ARG BASE=node\n"
    "FROM python AS a\n"
    "FROM python:latest AS b\n"
    "FROM localhost:5000/tools\n"
    "FROM python:3.12-slim\n"
    "FROM python:3.12-slim@sha256:" + "a" * 64 + "\n"
    "FROM a\n"
    "FROM scratch\n"
    "FROM ${BASE}\n"
)


def test_rl005_triggers_on_no_tag_and_latest_including_arg_defaults(tmp_path):
    assert codes(tmp_path, {"Dockerfile": FROMS}, "RL005") == [("Dockerfile", n) for n in (2, 3, 4, 9)]


def test_rl006_triggers_on_a_tag_without_a_digest_only(tmp_path):
    assert codes(tmp_path, {"Dockerfile": FROMS}, "RL006") == [("Dockerfile", 5)]


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    """A `docker` on PATH that prints the given RepoDigests, and a DOCKER_HOST."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    def install(output: str, code: int = 0):
        script = bin_dir / "docker"
        script.write_text(f"#!/bin/sh\necho '{output}'\nexit {code}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")

    return install


def test_unsafe_fix_pins_the_local_digest_and_keeps_the_tag(tmp_path, fake_docker):
    digest = "sha256:" + "b" * 64
    fake_docker(f'["python@{digest}"]')
    repo = tmp_path / "repo"
    text = "FROM python:3.12-slim AS build\r\nRUN true\r\nFROM build\r\n"
    assert fixed(repo, {"Dockerfile": text}, "RL006") == {
        "Dockerfile": f"FROM python:3.12-slim@{digest} AS build\r\nRUN true\r\nFROM build\r\n"
    }


def test_unsafe_fix_fails_for_a_locally_built_image_without_repo_digests(tmp_path, fake_docker):
    fake_docker("[]")
    with pytest.raises(FixError, match="digest not known locally"):
        fixed(tmp_path / "repo", {"Dockerfile": "FROM acme/standin:1\n"}, "RL006")


def test_unsafe_fix_needs_a_docker_host(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    with pytest.raises(Declined, match="DOCKER_HOST is not set") as declined:  # not applicable here, not broken
        fixed(tmp_path, {"Dockerfile": "FROM python\n"}, "RL005")
    assert "pin it by hand" in declined.value.action
