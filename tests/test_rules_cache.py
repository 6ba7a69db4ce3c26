"""The cache family: CA001 (pip without a cache mount), CA002 (--no-cache-dir beside it), CA003 (other managers
without a cache mount), CA004 (a cache mount emptied or bypassed), CA005 (apt mount unlocked or emptied by
docker-clean), and their two fixes (cache-mounts, cache-repair)."""

from __future__ import annotations

import pytest

from agent_pipelines.engine.artifacts import Design
from agent_pipelines.engine.domain import AlreadyResolved, FixError
from agent_pipelines.pipelines.docker_optimization.domain import DockerDomain
from tests.rulekit import codes, fixed, write

BARE = "FROM python:3.12-slim\nRUN pip install -r requirements.txt\n"
MOUNTED = "FROM python:3.12-slim\nRUN --mount=type=cache,target=/root/.cache/pip pip install -r r.txt\n"
DEFEATED = (
    "FROM python:3.12-slim\n"
    "# keep this comment\n"
    "RUN --mount=type=cache,target=/root/.cache/pip \\\n"
    "    pip install --no-cache-dir -r r.txt\n"
)
APT_LOCKED = "--mount=type=cache,target=/var/cache/apt,sharing=locked"
LISTS_LOCKED = "--mount=type=cache,target=/var/lib/apt,sharing=locked"
HOOK_RM = "rm -f /etc/apt/apt.conf.d/docker-clean && "


def fix_error(tmp_path, files, rule) -> str:
    with pytest.raises(FixError) as err:
        fixed(tmp_path, files, rule)
    return str(err.value)


# -- CA001: pip without a cache mount -----------------------------------------------------------


def test_ca001_triggers_on_pip_install_without_a_cache_mount(tmp_path):
    assert codes(tmp_path, {"Dockerfile": BARE}, "CA001") == [("Dockerfile", 2)]


def test_ca001_also_sees_python_m_pip_and_pip3(tmp_path):
    text = "FROM python:3.12\nRUN python3 -m pip install x\nRUN pip3 install y\n"
    assert codes(tmp_path, {"Dockerfile": text}, "CA001") == [("Dockerfile", 2), ("Dockerfile", 3)]


def test_ca001_is_quiet_when_the_mount_is_there(tmp_path):
    assert codes(tmp_path, {"Dockerfile": MOUNTED}, "CA001") == []


def test_ca001_is_quiet_on_uv_pip_which_is_ca003(tmp_path):
    text = "FROM python:3.12\nRUN uv pip install x\n"
    assert codes(tmp_path, {"Dockerfile": text}, "CA001") == []
    assert codes(tmp_path, {"Dockerfile": text}, "CA003") == [("Dockerfile", 2)]


def test_ca001_follows_pip_cache_dir_set_by_env(tmp_path):
    moved = "FROM python:3.12\nENV PIP_CACHE_DIR=/tmp/pip\nRUN pip install x\n"
    assert fixed(tmp_path, {"Dockerfile": moved}, "CA001") == {
        "Dockerfile": (
            "FROM python:3.12\nENV PIP_CACHE_DIR=/tmp/pip\nRUN --mount=type=cache,target=/tmp/pip pip install x\n"
        )
    }
    mounted = "FROM python:3.12\nENV PIP_CACHE_DIR=/tmp/pip\nRUN --mount=type=cache,target=/tmp/pip pip install x\n"
    assert codes(tmp_path, {"Dockerfile": mounted}, "CA001") == []


def test_fix_adds_the_mount_and_drops_no_cache_dir_on_one_line(tmp_path):
    text = 'FROM python:3.12-slim\nRUN pip install --no-cache-dir -r requirements.txt\nCMD ["x"]'
    assert fixed(tmp_path, {"Dockerfile": text}, "CA001") == {
        "Dockerfile": (
            "FROM python:3.12-slim\n"
            "RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt\n"
            'CMD ["x"]'
        )
    }  # no final newline before, none after


def test_fix_drops_a_line_that_held_only_the_flag_and_keeps_crlf(tmp_path):
    text = "FROM python:3.12\r\nRUN pip install \\\r\n    --no-cache-dir \\\r\n    flask\r\n"
    assert fixed(tmp_path, {"Dockerfile": text}, "CA001") == {
        "Dockerfile": (
            "FROM python:3.12\r\nRUN --mount=type=cache,target=/root/.cache/pip pip install \\\r\n    flask\r\n"
        )
    }


def test_ca001_fix_drops_an_env_pip_no_cache_dir_once_every_pip_install_has_a_mount(tmp_path):
    text = "FROM python:3.12\nENV A=1 PIP_NO_CACHE_DIR=1 \\\n    B=2\nRUN pip install x\nRUN pip install y\n"
    assert fixed(tmp_path, {"Dockerfile": text}, "CA001") == {
        "Dockerfile": (
            "FROM python:3.12\n"
            "ENV A=1 \\\n"
            "    B=2\n"
            "RUN --mount=type=cache,target=/root/.cache/pip pip install x\n"
            "RUN --mount=type=cache,target=/root/.cache/pip pip install y\n"
        )
    }


# -- CA002: --no-cache-dir beside the pip mount -------------------------------------------------


def test_ca002_triggers_on_no_cache_dir_beside_a_cache_mount(tmp_path):
    assert codes(tmp_path, {"Dockerfile": DEFEATED}, "CA002") == [("Dockerfile", 3)]


def test_ca002_is_quiet_without_a_mount(tmp_path):
    assert codes(tmp_path, {"Dockerfile": "FROM python:3.12\nRUN pip install --no-cache-dir x\n"}, "CA002") == []


def test_fix_on_a_continued_run_keeps_every_other_byte(tmp_path):
    assert fixed(tmp_path, {"Dockerfile": DEFEATED}, "CA002") == {
        "Dockerfile": (
            "FROM python:3.12-slim\n"
            "# keep this comment\n"
            "RUN --mount=type=cache,target=/root/.cache/pip \\\n"
            "    pip install -r r.txt\n"
        )
    }


# -- CA003: every other package manager ---------------------------------------------------------

# (id, base image, the RUN's command, the fixed RUN line)
MANAGERS = [
    (
        "uv-pip",
        "python:3.12",
        "uv pip install -r r.txt",
        "RUN --mount=type=cache,target=/root/.cache/uv uv pip install -r r.txt",
    ),
    ("uv-sync", "python:3.12", "uv sync --frozen", "RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen"),
    (
        "poetry",
        "python:3.12",
        "poetry install --no-root",
        "RUN --mount=type=cache,target=/root/.cache/pypoetry poetry install --no-root",
    ),
    ("npm-ci", "node:20", "npm ci", "RUN --mount=type=cache,target=/root/.npm npm ci"),
    (
        "npm-install",
        "node:20",
        "npm install --omit=dev",
        "RUN --mount=type=cache,target=/root/.npm npm install --omit=dev",
    ),
    (
        "yarn",
        "node:20",
        "yarn install --frozen-lockfile",
        "RUN --mount=type=cache,target=/usr/local/share/.cache/yarn yarn install --frozen-lockfile",
    ),
    ("yarn-bare", "node:20", "yarn", "RUN --mount=type=cache,target=/usr/local/share/.cache/yarn yarn"),
    (
        "pnpm",
        "node:20",
        "pnpm install --frozen-lockfile",
        "RUN --mount=type=cache,target=/root/.local/share/pnpm/store pnpm install --frozen-lockfile",
    ),
    ("apt", "debian:12", "apt-get install -y curl", f"RUN {APT_LOCKED} {HOOK_RM}apt-get install -y curl"),
    ("apk", "alpine:3.20", "apk add curl", "RUN --mount=type=cache,target=/var/cache/apk apk add --update-cache curl"),
    (
        "go-build",
        "golang:1.23",
        "go build -o /app ./cmd/app",
        "RUN --mount=type=cache,target=/root/.cache/go-build --mount=type=cache,target=/go/pkg/mod "
        "go build -o /app ./cmd/app",
    ),
    ("go-mod", "golang:1.23", "go mod download", "RUN --mount=type=cache,target=/go/pkg/mod go mod download"),
    (
        "cargo",
        "rust:1.82",
        "cargo build --release",
        "RUN --mount=type=cache,target=/usr/local/cargo/registry cargo build --release",
    ),
    ("maven", "maven:3-eclipse-temurin-21", "mvn -B package", "RUN --mount=type=cache,target=/root/.m2 mvn -B package"),
    ("gradlew", "eclipse-temurin:21", "./gradlew build", "RUN --mount=type=cache,target=/root/.gradle ./gradlew build"),
    ("gradle", "gradle:8-jdk21", "gradle build", "RUN --mount=type=cache,target=/root/.gradle gradle build"),
]


@pytest.mark.parametrize("base,command,expected", [m[1:] for m in MANAGERS], ids=[m[0] for m in MANAGERS])
def test_ca003_triggers_on_the_install_line(tmp_path, base, command, expected):
    text = f'FROM {base}\nWORKDIR /src\nRUN {command}\nCMD ["x"]\n'
    assert codes(tmp_path, {"Dockerfile": text}, "CA003") == [("Dockerfile", 3)]


@pytest.mark.parametrize("base,command,expected", [m[1:] for m in MANAGERS], ids=[m[0] for m in MANAGERS])
def test_ca003_is_quiet_once_mounted(tmp_path, base, command, expected):
    text = f'FROM {base}\nWORKDIR /src\n{expected}\nCMD ["x"]\n'
    assert [c for c in codes(tmp_path, {"Dockerfile": text}, "CA003")] == []
    assert [f for f in ("CA004", "CA005") if codes(tmp_path / f, {"Dockerfile": text}, f)] == []


@pytest.mark.parametrize("base,command,expected", [m[1:] for m in MANAGERS], ids=[m[0] for m in MANAGERS])
def test_ca003_fix_gives_exactly_this_text(tmp_path, base, command, expected):
    text = f'FROM {base}\nWORKDIR /src\nRUN {command}\nCMD ["x"]\n'
    assert fixed(tmp_path, {"Dockerfile": text}, "CA003") == {
        "Dockerfile": f'FROM {base}\nWORKDIR /src\n{expected}\nCMD ["x"]\n'
    }


@pytest.mark.parametrize(
    "command",
    [
        "npm run build",
        "yarn build",
        "yarn --version",
        "pnpm run test",
        "poetry run pytest",
        "uv run x",
        "go version",
        "go vet ./...",
        "cargo --version",
        "mvn --version",
        "gradle -v",
        "apt-get update",
        "apk info",
        "cat yarn.lock",
        "chmod +x ./gradlew",
        "chmod +x mvnw && ls",
        "cp gradlew /usr/local/bin/",
    ],
)
def test_ca003_is_quiet_on_commands_that_install_nothing(tmp_path, command):
    assert codes(tmp_path, {"Dockerfile": f"FROM x\nRUN {command}\n"}, "CA003") == []


def test_ca003_counts_a_mount_on_a_parent_directory(tmp_path):
    text = "FROM python:3.12\nRUN --mount=type=cache,target=/root/.cache uv sync\n"
    assert codes(tmp_path, {"Dockerfile": text}, "CA003") == []


def test_ca003_follows_pnpm_home_and_gomodcache(tmp_path):
    pnpm = "FROM node:20\nENV PNPM_HOME=/pnpm\nRUN --mount=type=cache,id=pnpm,target=/pnpm/store pnpm install\n"
    assert codes(tmp_path, {"Dockerfile": pnpm}, "CA003") == []
    go = "FROM golang:1.23 AS base\nENV GOMODCACHE=/cache/mod\nFROM base\nRUN go mod download\n"
    assert fixed(tmp_path, {"Dockerfile": go}, "CA003") == {
        "Dockerfile": (
            "FROM golang:1.23 AS base\nENV GOMODCACHE=/cache/mod\nFROM base\n"
            "RUN --mount=type=cache,target=/cache/mod go mod download\n"
        )
    }


def test_ca003_apt_with_update_mounts_the_lists_too_and_drops_their_cleanup(tmp_path):
    text = (
        "FROM debian:12\n"
        "RUN apt-get update \\\n"
        " && apt-get install -y --no-install-recommends curl \\\n"
        " && apt-get clean \\\n"
        " && rm -rf /var/lib/apt/lists/* /tmp/*\n"
    )
    assert codes(tmp_path, {"Dockerfile": text}, "CA003") == [("Dockerfile", 2)]
    assert fixed(tmp_path, {"Dockerfile": text}, "CA003") == {
        "Dockerfile": (
            "FROM debian:12\n"
            f"RUN {APT_LOCKED} {LISTS_LOCKED} {HOOK_RM}apt-get update \\\n"
            " && apt-get install -y --no-install-recommends curl \\\n"
            " && rm -rf /tmp/*\n"
        )
    }


def test_ca003_apt_fix_keeps_crlf_and_leaves_no_dangling_continuation(tmp_path):
    text = (
        "FROM debian:12\r\n"
        "RUN apt-get update && apt-get install -y curl \\\r\n"
        "    && rm -rf /var/lib/apt/lists/*\r\n"
        'CMD ["curl"]'
    )
    assert fixed(tmp_path, {"Dockerfile": text}, "CA003") == {
        "Dockerfile": (
            "FROM debian:12\r\n"
            f"RUN {APT_LOCKED} {LISTS_LOCKED} {HOOK_RM}apt-get update && apt-get install -y curl\r\n"
            'CMD ["curl"]'
        )
    }


def test_ca003_apt_fix_puts_the_hook_removal_before_the_command_past_a_comment(tmp_path):
    text = "FROM debian:12\nRUN \\\n  # curl for the health check\n  apt-get install -y curl\n"
    assert fixed(tmp_path, {"Dockerfile": text}, "CA003") == {
        "Dockerfile": (
            f"FROM debian:12\nRUN {APT_LOCKED} \\\n  # curl for the health check\n  {HOOK_RM}apt-get install -y curl\n"
        )
    }


def test_ca003_apt_skips_the_hook_removal_when_an_earlier_stage_did_it(tmp_path):
    text = (
        "FROM debian:12 AS base\nRUN rm -f /etc/apt/apt.conf.d/docker-clean\nFROM base\nRUN apt-get install -y curl\n"
    )
    assert fixed(tmp_path, {"Dockerfile": text}, "CA003")["Dockerfile"].endswith(
        f"RUN {APT_LOCKED} apt-get install -y curl\n"
    )


def test_ca003_apk_no_cache_becomes_update_cache(tmp_path):
    text = "FROM alpine:3.20\nRUN apk add --no-cache curl\n"
    assert codes(tmp_path, {"Dockerfile": text}, "CA003") == [("Dockerfile", 2)]
    assert fixed(tmp_path, {"Dockerfile": text}, "CA003") == {
        "Dockerfile": ("FROM alpine:3.20\nRUN --mount=type=cache,target=/var/cache/apk apk add --update-cache curl\n")
    }


def test_ca003_adds_every_manager_of_one_run_at_once(tmp_path):
    text = "FROM node:20\nRUN npm ci && pip install -r r.txt\n"
    assert codes(tmp_path, {"Dockerfile": text}, "CA003") == [("Dockerfile", 2)]
    assert codes(tmp_path, {"Dockerfile": text}, "CA001") == [("Dockerfile", 2)]
    assert fixed(tmp_path, {"Dockerfile": text}, "CA003") == {
        "Dockerfile": (
            "FROM node:20\n"
            "RUN --mount=type=cache,target=/root/.cache/pip --mount=type=cache,target=/root/.npm "
            "npm ci && pip install -r r.txt\n"
        )
    }


def test_ca003_under_another_user_wants_that_users_home_and_the_fix_refuses(tmp_path):
    text = "FROM node:20\nUSER node\nRUN npm ci\n"
    assert codes(tmp_path, {"Dockerfile": text}, "CA003") == [("Dockerfile", 3)]
    assert "runs as node" in fix_error(tmp_path, {"Dockerfile": text}, "CA003")
    mounted = "FROM node:20\nUSER node\nRUN --mount=type=cache,target=/home/node/.npm,uid=1000 npm ci\n"
    assert codes(tmp_path, {"Dockerfile": mounted}, "CA003") == []


def test_ca003_sees_a_heredoc_script_and_the_fix_mounts_it(tmp_path):
    text = 'FROM node:20\nRUN <<EOF\nset -e\nnpm ci\nEOF\nCMD ["node"]\n'
    assert codes(tmp_path, {"Dockerfile": text}, "CA003") == [("Dockerfile", 2)]
    assert fixed(tmp_path, {"Dockerfile": text}, "CA003") == {
        "Dockerfile": (
            'FROM node:20\nRUN --mount=type=cache,target=/root/.npm <<EOF\nset -e\nnpm ci\nEOF\nCMD ["node"]\n'
        )
    }


def test_ca003_fix_refuses_a_heredoc_whose_script_would_need_editing(tmp_path):
    text = "FROM debian:12\nRUN <<EOF\napt-get update\napt-get install -y curl\nEOF\n"
    assert codes(tmp_path, {"Dockerfile": text}, "CA003") == [("Dockerfile", 2)]
    assert "heredoc RUN" in fix_error(tmp_path, {"Dockerfile": text}, "CA003")


def test_ca003_fix_mounts_an_exec_form_run(tmp_path):
    text = 'FROM node:20\nRUN ["npm", "ci"]\n'
    assert fixed(tmp_path, {"Dockerfile": text}, "CA003") == {
        "Dockerfile": ('FROM node:20\nRUN --mount=type=cache,target=/root/.npm ["npm", "ci"]\n')
    }


def test_the_example_web_service_gets_its_npm_cache_mount(tmp_path):
    text = 'FROM node:20-slim\nWORKDIR /app\nCOPY . .\nRUN npm install\nEXPOSE 3000\nCMD ["node", "src/server.js"]\n'
    assert fixed(tmp_path, {"Dockerfile": text}, "CA003") == {
        "Dockerfile": text.replace("RUN npm install", "RUN --mount=type=cache,target=/root/.npm npm install")
    }


# -- CA004: a cache mount emptied or bypassed ---------------------------------------------------

NPM = "--mount=type=cache,target=/root/.npm"
PIPM = "--mount=type=cache,target=/root/.cache/pip"
# (id, RUN line with the defeat, the fixed RUN line)
DEFEATS = [
    ("npm-cache-clean", f"RUN {NPM} npm ci && npm cache clean --force", f"RUN {NPM} npm ci"),
    (
        "yarn-cache-clean",
        "RUN --mount=type=cache,target=/usr/local/share/.cache/yarn yarn install; yarn cache clean",
        "RUN --mount=type=cache,target=/usr/local/share/.cache/yarn yarn install",
    ),
    ("pip-cache-purge", f"RUN {PIPM} pip install x && pip cache purge", f"RUN {PIPM} pip install x"),
    ("pip-env-inline", f"RUN {PIPM} PIP_NO_CACHE_DIR=1 pip install x", f"RUN {PIPM} pip install x"),
    (
        "uv-no-cache",
        "RUN --mount=type=cache,target=/root/.cache/uv uv sync --no-cache --frozen",
        "RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen",
    ),
    (
        "poetry-no-cache",
        "RUN --mount=type=cache,target=/root/.cache/pypoetry poetry install --no-cache",
        "RUN --mount=type=cache,target=/root/.cache/pypoetry poetry install",
    ),
    (
        "apk-no-cache",
        "RUN --mount=type=cache,target=/var/cache/apk apk add --no-cache curl",
        "RUN --mount=type=cache,target=/var/cache/apk apk add --update-cache curl",
    ),
    (
        "apk-no-cache-updated",
        "RUN --mount=type=cache,target=/var/cache/apk apk --no-cache -U add curl",
        "RUN --mount=type=cache,target=/var/cache/apk apk -U add curl",
    ),
    (
        "apt-get-clean",
        f"RUN {APT_LOCKED} {HOOK_RM}apt-get install -y curl && apt-get clean",
        f"RUN {APT_LOCKED} {HOOK_RM}apt-get install -y curl",
    ),
    (
        "rm-apt-lists",
        f"RUN {LISTS_LOCKED} apt-get update && rm -rf /var/lib/apt/lists/*",
        f"RUN {LISTS_LOCKED} apt-get update",
    ),
    ("rm-parent", f"RUN {PIPM} pip install x && rm -rf /root/.cache", f"RUN {PIPM} pip install x"),
    ("rm-home", f"RUN {NPM} npm ci && rm -rf ~/.npm /tmp/build", f"RUN {NPM} npm ci && rm -rf /tmp/build"),
    (
        "go-clean-modcache",
        "RUN --mount=type=cache,target=/go/pkg/mod go mod download && go clean -modcache",
        "RUN --mount=type=cache,target=/go/pkg/mod go mod download",
    ),
    ("leading", f"RUN {NPM} npm cache clean --force && npm ci", f"RUN {NPM} npm ci"),
    ("inside-sh-c", f"RUN {NPM} sh -c 'npm ci && npm cache clean --force'", f"RUN {NPM} sh -c 'npm ci'"),
]


@pytest.mark.parametrize("line,expected", [d[1:] for d in DEFEATS], ids=[d[0] for d in DEFEATS])
def test_ca004_triggers_on_the_run(tmp_path, line, expected):
    assert codes(tmp_path, {"Dockerfile": f"FROM x\n{line}\n"}, "CA004") == [("Dockerfile", 2)]


@pytest.mark.parametrize("line,expected", [d[1:] for d in DEFEATS], ids=[d[0] for d in DEFEATS])
def test_ca004_fix_gives_exactly_this_text(tmp_path, line, expected):
    assert fixed(tmp_path, {"Dockerfile": f"FROM x\n{line}\n"}, "CA004") == {"Dockerfile": f"FROM x\n{expected}\n"}


@pytest.mark.parametrize(
    "line",
    [
        "RUN npm ci && npm cache clean --force",  # no mount: size hygiene
        "RUN --mount=type=cache,target=/root/.npm yarn install && yarn cache clean",  # yarn's cache isn't mounted
        f"RUN {APT_LOCKED} {HOOK_RM}apt-get update && apt-get install -y x && rm -rf /var/lib/apt/lists/*",
        f"RUN {NPM} npm ci && rm -rf /tmp/* node_modules/.cache",
        f"RUN {PIPM} pip install --no-cache-dir x",  # that one is CA002
        "RUN --mount=type=cache,target=/var/cache/apk apk add --update-cache curl",
    ],
)
def test_ca004_is_quiet(tmp_path, line):
    assert codes(tmp_path, {"Dockerfile": f"FROM x\n{line}\n"}, "CA004") == []


@pytest.mark.parametrize("value", ["1", "true", "0", "off"])
def test_ca004_env_pip_no_cache_dir_defeats_the_mount_whatever_its_value(tmp_path, value):
    text = f"FROM python:3.12\nENV PIP_NO_CACHE_DIR={value}\nRUN {PIPM} pip install x\n"
    assert codes(tmp_path, {"Dockerfile": text}, "CA004") == [("Dockerfile", 3)]
    assert fixed(tmp_path, {"Dockerfile": text}, "CA004") == {
        "Dockerfile": f"FROM python:3.12\nRUN {PIPM} pip install x\n"
    }


def test_ca004_fix_keeps_an_env_that_governs_a_pip_install_without_a_mount(tmp_path):
    text = f"FROM python:3.12\nENV PIP_NO_CACHE_DIR=1\nRUN {PIPM} pip install x\nUSER app\nRUN pip install y\n"
    assert "governs the pip install at line 5" in fix_error(tmp_path, {"Dockerfile": text}, "CA004")


def test_ca004_fix_on_continued_lines_leaves_no_dangling_continuation_and_keeps_crlf(tmp_path):
    text = (
        f"FROM node:20\r\nRUN {NPM} \\\r\n    npm ci \\\r\n    && npm cache clean --force\r\nRUN {{x}} \\\r\n".replace(
            "{x}", NPM
        )
        + "    npm cache clean --force && \\\r\n"
        "    npm run build\r\n"
    )
    assert codes(tmp_path, {"Dockerfile": text}, "CA004") == [("Dockerfile", 2), ("Dockerfile", 5)]
    assert fixed(tmp_path, {"Dockerfile": text}, "CA004") == {
        "Dockerfile": (f"FROM node:20\r\nRUN {NPM} \\\r\n    npm ci\r\nRUN {NPM} \\\r\n    npm run build\r\n")
    }


def test_ca004_fix_removes_a_middle_line(tmp_path):
    text = f"FROM node:20\nRUN {NPM} npm ci \\\n    && npm cache clean --force \\\n    && npm run build\n"
    assert fixed(tmp_path, {"Dockerfile": text}, "CA004") == {
        "Dockerfile": (f"FROM node:20\nRUN {NPM} npm ci \\\n    && npm run build\n")
    }


def test_ca004_fix_refuses_what_it_cant_remove_cleanly(tmp_path):
    alone = f"FROM node:20\nRUN {NPM} npm cache clean --force\n"
    assert "can't remove `npm cache clean --force`" in fix_error(tmp_path / "a", {"Dockerfile": alone}, "CA004")
    after_or = f"FROM node:20\nRUN {NPM} npm ci || npm cache clean --force\n"
    assert "can't remove" in fix_error(tmp_path / "b", {"Dockerfile": after_or}, "CA004")


def test_ca004_in_a_heredoc_is_seen_and_the_fix_refuses_it(tmp_path):
    text = f"FROM node:20\nRUN {NPM} <<EOF\nnpm ci\nnpm cache clean --force\nEOF\n"
    assert codes(tmp_path, {"Dockerfile": text}, "CA004") == [("Dockerfile", 2)]
    assert "heredoc RUN" in fix_error(tmp_path, {"Dockerfile": text}, "CA004")


# -- CA005: apt mounts without sharing=locked, or emptied by docker-clean -----------------------


def test_ca005_triggers_on_unlocked_mounts_and_on_the_active_hook(tmp_path):
    text = (
        "FROM debian:12\n"
        "RUN --mount=type=cache,target=/var/cache/apt --mount=type=cache,target=/var/lib/apt,sharing=shared \\\n"
        "    apt-get update && apt-get install -y curl\n"
    )
    assert codes(tmp_path, {"Dockerfile": text}, "CA005") == [("Dockerfile", 2)] * 3


@pytest.mark.parametrize(
    "text",
    [
        f"FROM debian:12\nRUN {APT_LOCKED} {LISTS_LOCKED} {HOOK_RM}apt-get update && apt-get install -y curl\n",
        f"FROM debian:12\nRUN rm -f /etc/apt/apt.conf.d/docker-clean\nRUN {APT_LOCKED} apt-get install -y curl\n",
        f"FROM debian:12 AS b\nRUN rm -f /etc/apt/apt.conf.d/docker-clean\nFROM b\nRUN {APT_LOCKED} apt-get install -y x\n",
        f"FROM debian:12\nRUN {LISTS_LOCKED} apt-get update\n",  # the hook only empties archives
        "FROM debian:12\nRUN --mount=type=cache,target=/var/cache/apt echo no apt here\n",
    ],
)
def test_ca005_is_quiet(tmp_path, text):
    assert codes(tmp_path, {"Dockerfile": text}, "CA005") == []


@pytest.mark.parametrize("nl", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_ca005_fix_locks_the_mounts_and_removes_the_hook(tmp_path, nl):
    text = (
        "FROM debian:12\n"
        "RUN --mount=type=cache,target=/var/cache/apt --mount=type=cache,target=/var/lib/apt,sharing=shared \\\n"
        "    apt-get update && apt-get install -y curl\n"
    ).replace("\n", nl)
    assert fixed(tmp_path, {"Dockerfile": text}, "CA005") == {
        "Dockerfile": (
            "FROM debian:12\n"
            f"RUN {APT_LOCKED} {LISTS_LOCKED} \\\n"
            f"    {HOOK_RM}apt-get update && apt-get install -y curl\n"
        ).replace("\n", nl)
    }


def test_ca005_fix_locks_a_heredoc_runs_mounts_but_refuses_its_hook(tmp_path):
    locking = "FROM debian:12\nRUN --mount=type=cache,target=/var/lib/apt <<EOF\napt-get update\nEOF\n"
    assert fixed(tmp_path / "a", {"Dockerfile": locking}, "CA005") == {
        "Dockerfile": (f"FROM debian:12\nRUN {LISTS_LOCKED} <<EOF\napt-get update\nEOF\n")
    }
    hooked = f"FROM debian:12\nRUN {APT_LOCKED} <<EOF\napt-get install -y curl\nEOF\n"
    assert "remove /etc/apt/apt.conf.d/docker-clean" in fix_error(tmp_path / "b", {"Dockerfile": hooked}, "CA005")


# -- the fixes in a run: sequences, already resolved, odd input ---------------------------------


def apply_all(tmp_path, files, rules, edit=None):
    """Plan every task for ``rules``, optionally edit the tree, then apply the tasks in plan order."""
    write(tmp_path, files)
    domain = DockerDomain()
    findings = [f for f in domain.analyze(tmp_path) if f.rule in rules]
    plan = domain.plan(findings, ["analysis", "dockerfiles", "compose"], unsafe=False, root=tmp_path)
    if edit:
        write(tmp_path, edit)
    for task in plan.tasks:
        domain.apply(task, tmp_path, Design())
    return plan


def test_mounts_then_repair_on_one_dockerfile_clears_the_whole_family(tmp_path):
    text = (
        "FROM python:3.12-slim\n"
        "RUN --mount=type=cache,target=/root/.cache/pip \\\n"
        "    pip install --no-cache-dir -r /srv/requirements.txt\n"
        "RUN pip install -e /srv/libs/common && npm ci && npm cache clean --force\n"
    )
    plan = apply_all(tmp_path, {"Dockerfile": text}, {"CA001", "CA002", "CA003"})
    assert [t.fix for t in plan.tasks] == ["cache-mounts", "cache-repair"]
    assert (tmp_path / "Dockerfile").read_text() == (
        "FROM python:3.12-slim\n"
        "RUN --mount=type=cache,target=/root/.cache/pip \\\n"
        "    pip install -r /srv/requirements.txt\n"
        "RUN --mount=type=cache,target=/root/.cache/pip --mount=type=cache,target=/root/.npm "
        "pip install -e /srv/libs/common && npm ci\n"
    )
    assert [f.rule for f in DockerDomain().analyze(tmp_path) if f.rule.startswith("CA")] == []


@pytest.mark.parametrize(
    "rule,done",
    [
        ("CA003", f"FROM node:20\nRUN {NPM} npm ci\n"),
        ("CA004", f"FROM node:20\nRUN {NPM} npm ci\n"),
    ],
)
def test_a_fix_whose_findings_are_gone_raises_already_resolved(tmp_path, rule, done):
    before = {"CA003": "FROM node:20\nRUN npm ci\n", "CA004": f"FROM node:20\nRUN {NPM} npm ci && npm cache clean\n"}
    with pytest.raises(AlreadyResolved):
        apply_all(tmp_path, {"Dockerfile": before[rule]}, {rule}, edit={"Dockerfile": done})


def test_heredocs_of_every_shape_do_not_crash_the_rules(tmp_path):
    text = (
        "FROM debian:12\n"
        "RUN <<EOF bash\nset -e\napt-get update\nEOF\n"
        "RUN cat <<A <<B > /x\na\nA\nb\nB\n"
        "RUN --mount=type=cache,target=/var/cache/apt \\\n  <<-EOT\n\tapt-get install -y curl\n\tEOT\n"
        "COPY <<EOF /etc/x\nnpm ci\nEOF\n"
    )
    write(tmp_path, {"Dockerfile": text})
    found = sorted((f.rule, f.line) for f in DockerDomain().analyze(tmp_path) if f.rule.startswith("CA"))
    assert found == [("CA005", 11), ("CA005", 11)]  # unlocked, and docker-clean active


def test_a_fix_refuses_a_dockerfile_with_another_escape_character(tmp_path):
    text = "# escape=`\nFROM node:20\nRUN npm ci\n"
    assert "escape" in fix_error(tmp_path, {"Dockerfile": text}, "CA003")
