"""LY001-LY004 (layer order and splits) and their fixes: what triggers, what doesn't, the exact fixed text."""

from __future__ import annotations

import pytest

from agent_pipelines.engine.domain import FixError
from tests.rulekit import codes, fixed

PY = "FROM python:3.12-slim\nWORKDIR /app\n"
BILLING = (
    PY + 'COPY . .\nRUN pip install --upgrade pip\nRUN pip install -r requirements.txt\nCMD ["python", "app.py"]\n'
)


def ctx(dockerfile: str, files: dict[str, str] | None = None) -> dict[str, str]:
    """A Dockerfile built from its own directory, with a few context files."""
    return {"Dockerfile": dockerfile, "app.py": "print()\n", **(files or {})}


# -- LY001: manifests copied after the source ------------------------------------------------


def test_ly001_triggers_on_an_install_after_copy_all(tmp_path):
    text = PY + "COPY . .\nRUN pip install -r requirements.txt\n"
    assert codes(tmp_path, ctx(text), "LY001") == [("Dockerfile", 4)]


def test_ly001_triggers_for_npm_go_and_a_directory_copy_that_brings_the_manifest(tmp_path):
    text = (
        "FROM node:20 AS web\nWORKDIR /web\nCOPY . .\nRUN npm ci\n"
        "FROM golang:1.22 AS go\nWORKDIR /src\nCOPY . .\nRUN go mod download\n"
        "FROM python:3.12\nCOPY api/ /srv/\nRUN pip install -r /srv/requirements.txt\n"
    )
    assert codes(tmp_path, ctx(text), "LY001") == [("Dockerfile", 4), ("Dockerfile", 8), ("Dockerfile", 11)]


def test_ly001_triggers_on_pip_install_dot_with_no_dependencies_installed_before(tmp_path):
    assert codes(tmp_path, ctx(PY + "COPY . .\nRUN pip install .\n"), "LY001") == [("Dockerfile", 4)]


def test_ly001_is_quiet_when_the_manifests_come_first(tmp_path):
    text = (
        PY + "COPY requirements.txt ./\nRUN pip install -r requirements.txt\nCOPY . .\n"
        "RUN pip install --no-deps .\nRUN pip install -e .\nRUN python -m compileall .\n"
    )
    assert codes(tmp_path, ctx(text), "LY001") == []


def test_ly001_is_quiet_on_a_library_copied_and_installed_by_itself(tmp_path):
    text = (
        "FROM python:3.12\nWORKDIR /srv\nCOPY libs/common /srv/libs/common\nCOPY requirements.txt /srv/\n"
        "RUN pip install -r /srv/requirements.txt\nRUN pip install -e /srv/libs/common\nCOPY app /srv/app\n"
    )
    assert codes(tmp_path, ctx(text), "LY001") == []


def test_ly001_fix_copies_the_manifest_first_and_moves_the_installs_unchanged(tmp_path):
    out = fixed(tmp_path, ctx(BILLING, {"requirements.txt": "flask\n"}), "LY001")
    assert out == {
        "Dockerfile": PY
        + (
            "COPY requirements.txt ./\n"
            "RUN pip install --upgrade pip\n"
            "RUN pip install -r requirements.txt\n"
            "COPY . .\n"
            'CMD ["python", "app.py"]\n'
        )
    }


def test_ly001_fix_after_the_pip_upgrade_was_folded(tmp_path):
    files = ctx(BILLING, {"requirements.txt": "flask\n"})
    fixed(tmp_path, files, "LY004")
    assert fixed(tmp_path, {}, "LY001") == {
        "Dockerfile": PY
        + (
            "COPY requirements.txt ./\n"
            "RUN pip install --upgrade pip && pip install -r requirements.txt\n"
            "COPY . .\n"
            'CMD ["python", "app.py"]\n'
        )
    }


def test_ly004_fix_after_the_installs_moved(tmp_path):
    fixed(tmp_path, ctx(BILLING, {"requirements.txt": "flask\n"}), "LY001")
    assert fixed(tmp_path, {}, "LY004") == {
        "Dockerfile": PY
        + (
            "COPY requirements.txt ./\n"
            "RUN pip install --upgrade pip && pip install -r requirements.txt\n"
            "COPY . .\n"
            'CMD ["python", "app.py"]\n'
        )
    }


def test_ly001_is_quiet_after_pnpm_fetch_and_cargo_chef(tmp_path):
    text = (
        "FROM node:20\nWORKDIR /app\nCOPY pnpm-lock.yaml ./\nRUN pnpm fetch\nCOPY . .\nRUN pnpm install --offline\n"
        "FROM rust:1\nWORKDIR /app\nCOPY recipe.json .\nRUN cargo chef cook --release\nCOPY . .\n"
        "RUN cargo build --release\n"
    )
    assert codes(tmp_path, ctx(text), "LY001") == []


def test_ly001_fix_keeps_crlf_comments_and_the_missing_final_newline(tmp_path):
    text = (
        "FROM node:20-slim\r\nWORKDIR /app\r\n# the app\r\nCOPY --chown=node:node . .\r\n\r\n"
        "# dependencies\r\nRUN --mount=type=cache,target=/root/.npm \\\r\n    npm ci --omit=dev"
    )
    files = ctx(
        text,
        {
            "package.json": '{"name": "web"}\n',
            "package-lock.json": "{}\n",
            ".npmrc": "x\n",
            ".dockerignore": "node_modules\n",
        },
    )
    assert fixed(tmp_path, files, "LY001") == {
        "Dockerfile": (
            "FROM node:20-slim\r\nWORKDIR /app\r\n"
            "COPY --chown=node:node package.json package-lock.json .npmrc ./\r\n"
            "# dependencies\r\nRUN --mount=type=cache,target=/root/.npm \\\r\n    npm ci --omit=dev\r\n"
            "# the app\r\nCOPY --chown=node:node . .\r\n"
        )
    }


def test_ly001_fix_moves_package_installs_in_between_and_leaves_inert_instructions(tmp_path):
    text = (
        PY + "COPY . .\nEXPOSE 80\nRUN apt-get update && apt-get install -y libpq5\n"
        "RUN pip install -r requirements/prod.txt\nRUN python manage.py collectstatic\n"
    )
    files = ctx(text, {"requirements/prod.txt": "-r base.txt\ndjango\n", "requirements/base.txt": "psycopg\n"})
    assert fixed(tmp_path, files, "LY001") == {
        "Dockerfile": PY
        + (
            "COPY requirements/prod.txt requirements/base.txt requirements/\n"
            "RUN apt-get update && apt-get install -y libpq5\n"
            "RUN pip install -r requirements/prod.txt\n"
            "COPY . .\nEXPOSE 80\n"
            "RUN python manage.py collectstatic\n"
        )
    }


def test_ly001_fix_only_moves_the_install_when_the_manifest_was_copied_before(tmp_path):
    text = "FROM golang:1.22\nWORKDIR /src\nCOPY go.mod go.sum ./\nCOPY . .\nRUN go mod download\nRUN go build .\n"
    files = ctx(text, {"go.mod": "module x\n", "go.sum": ""})
    assert fixed(tmp_path, files, "LY001") == {
        "Dockerfile": (
            "FROM golang:1.22\nWORKDIR /src\nCOPY go.mod go.sum ./\nRUN go mod download\nCOPY . .\nRUN go build .\n"
        )
    }


def test_ly001_fix_maps_a_directory_copy_to_its_context_path(tmp_path):
    text = "FROM python:3.12\nCOPY api/ /srv/\nRUN pip install -r /srv/requirements.txt\n"
    files = ctx(text, {"api/requirements.txt": "flask\n", "api/main.py": "x\n"})
    assert fixed(tmp_path, files, "LY001") == {
        "Dockerfile": (
            "FROM python:3.12\nCOPY api/requirements.txt /srv/\nRUN pip install -r /srv/requirements.txt\n"
            "COPY api/ /srv/\n"
        )
    }


@pytest.mark.parametrize(
    "text, files, reason",
    [
        (PY + "COPY . .\nRUN pip install .\n", {"pyproject.toml": "[project]\n"}, "needs its source"),
        (
            PY + "COPY . .\nRUN pip install -r requirements.txt\n",
            {"requirements.txt": "-e .\nflask\n"},
            "installs a local path",
        ),
        (
            PY + "COPY . .\nRUN make assets\nRUN pip install -r requirements.txt\n",
            {"requirements.txt": "x\n"},
            "may use the source",
        ),
        (
            PY + "COPY . .\nENV PIP_INDEX_URL=http://mirror\nRUN pip install -r requirements.txt\n",
            {"requirements.txt": "x\n"},
            "ENV sits between",
        ),
        (PY + "COPY . .\nRUN pip install -r requirements.txt\n", {}, "not sent in build context"),
        (
            "FROM node:20\nWORKDIR /app\nCOPY . .\nRUN npm ci\n",
            {"package.json": '{"scripts": {"postinstall": "node build.js"}}'},
            "postinstall",
        ),
        (
            "FROM node:20\nWORKDIR /app\nCOPY . .\nRUN npm ci\n",
            {"package.json": "{}"},
            "would then copy a local node_modules over the one npm installs",
        ),
    ],
)
def test_ly001_fix_refuses_when_the_install_needs_more_than_the_manifests(tmp_path, text, files, reason):
    with pytest.raises(FixError, match=reason):
        fixed(tmp_path, ctx(text, files), "LY001")


# -- LY002: RUNs that belong together -----------------------------------------------------------


def test_ly002_triggers_on_apt_update_in_its_own_run(tmp_path):
    text = "FROM debian:12\nRUN apt-get update\nRUN apt-get install -y curl && curl -o /x https://e.org\n"
    assert codes(tmp_path, ctx(text), "LY002") == [("Dockerfile", 2)]


def test_ly002_triggers_on_consecutive_runs_of_one_package_manager(tmp_path):
    text = "FROM alpine:3.20\nRUN apk add --no-cache curl\n# and git\nRUN apk add --no-cache git\n"
    assert codes(tmp_path, ctx(text), "LY002") == [("Dockerfile", 2)]


def test_ly002_is_quiet_on_pip_runs_in_a_row_and_on_runs_apart(tmp_path):
    text = (
        "FROM python:3.12\nRUN pip install -r r.txt\nRUN pip install -e /lib\n"
        "RUN apt-get update && apt-get install -y curl\nCOPY . .\nRUN apt-get update && apt-get install -y git\n"
        "RUN apt-get install -y jq && make\n"
    )
    assert codes(tmp_path, ctx(text), "LY002") == []


def test_ly002_fix_merges_the_split_update_into_the_install(tmp_path):
    text = 'FROM debian:12\nRUN apt-get update\n\nRUN apt-get install -y \\\n    curl \\\n    git\nCMD ["sh"]'
    assert fixed(tmp_path, ctx(text), "LY002") == {
        "Dockerfile": (
            'FROM debian:12\n\nRUN apt-get update \\\n    && apt-get install -y \\\n    curl \\\n    git\nCMD ["sh"]'
        )
    }


def test_ly002_fix_merges_mounts_and_keeps_crlf(tmp_path):
    text = "FROM alpine:3.20\r\nRUN apk add curl\r\nRUN --mount=type=cache,target=/var/cache/apk apk add git\r\n"
    assert fixed(tmp_path, ctx(text), "LY002") == {
        "Dockerfile": (
            "FROM alpine:3.20\r\nRUN --mount=type=cache,target=/var/cache/apk apk add curl \\\r\n    && apk add git\r\n"
        )
    }


# -- LY003: chown -R after COPY ----------------------------------------------------------------


def test_ly003_triggers_on_chown_r_of_the_copied_path(tmp_path):
    text = "FROM python:3.12\nWORKDIR /app\nCOPY . .\nRUN chown -R app:app /app\n"
    assert codes(tmp_path, ctx(text), "LY003") == [("Dockerfile", 4)]


def test_ly003_is_quiet_without_r_or_on_another_path(tmp_path):
    text = "FROM python:3.12\nCOPY . /app\nRUN chown app /app && chown -R app /data\nRUN chmod +x /app/run.sh\n"
    assert codes(tmp_path, ctx(text), "LY003") == []


def test_ly003_fix_moves_the_owner_into_copy_and_drops_the_run(tmp_path):
    text = "FROM python:3.12\nCOPY src/ /app/\nRUN chown -R app:app /app && chmod -R 755 /app\nUSER app"
    assert fixed(tmp_path, ctx(text, {"src/m.py": "x\n"}), "LY003") == {
        "Dockerfile": ("FROM python:3.12\nCOPY --chown=app:app --chmod=755 src/ /app/\nUSER app")
    }


def test_ly003_fix_keeps_a_plain_chown_of_a_directory_workdir_created(tmp_path):
    text = "FROM python:3.12\nWORKDIR /app\nCOPY --chown=root . .\nRUN chown -R app:app .\n"
    assert fixed(tmp_path, ctx(text), "LY003") == {
        "Dockerfile": ("FROM python:3.12\nWORKDIR /app\nCOPY --chown=app:app . .\nRUN chown app:app .\n")
    }


@pytest.mark.parametrize(
    "text, reason",
    [
        ("FROM python:3.12\nCOPY . /app\nRUN chown -R app /app && rm -rf /app/tests\n", "does more"),
        ("FROM python:3.12\nCOPY . /app\nRUN chmod -R u+x /app\n", "octal"),
        (
            "FROM node:20\nWORKDIR /app\nCOPY package.json .\nRUN npm ci\nCOPY . /app\nRUN chown -R node /app\n",
            "copied files under /app before",
        ),
    ],
)
def test_ly003_fix_refuses_what_copy_flags_cant_say(tmp_path, text, reason):
    with pytest.raises(FixError, match=reason):
        fixed(tmp_path, ctx(text), "LY003")


# -- LY004: pip upgrade in its own layer --------------------------------------------------------


def test_ly004_triggers_on_a_pip_upgrade_run(tmp_path):
    assert codes(tmp_path, ctx(BILLING), "LY004") == [("Dockerfile", 4)]


def test_ly004_is_quiet_when_the_upgrade_shares_the_install_run(tmp_path):
    text = PY + "RUN pip install -U pip setuptools && pip install -r r.txt\nRUN pip install -U pip flask\n"
    assert codes(tmp_path, ctx(text), "LY004") == []


def test_ly004_fix_folds_into_the_next_install_and_drops_no_cache_dir_beside_a_cache_mount(tmp_path):
    text = (
        PY + "# tooling\nRUN python -m pip install --no-cache-dir --upgrade pip wheel\nCOPY r.txt .\n"
        "RUN --mount=type=cache,target=/root/.cache/pip \\\n    pip install -r r.txt"
    )
    assert fixed(tmp_path, ctx(text), "LY004") == {
        "Dockerfile": PY
        + (
            "# tooling\nCOPY r.txt .\n"
            "RUN --mount=type=cache,target=/root/.cache/pip \\\n"
            "    python -m pip install --upgrade pip wheel && pip install -r r.txt"
        )
    }


def test_ly004_fix_drops_an_upgrade_no_install_uses(tmp_path):
    text = 'FROM python:3.12\r\nRUN pip install --upgrade pip\r\nCMD ["python"]\r\n'
    assert fixed(tmp_path, ctx(text), "LY004") == {"Dockerfile": 'FROM python:3.12\r\nCMD ["python"]\r\n'}


def test_ly004_fix_refuses_across_a_user_change(tmp_path):
    text = PY + "RUN pip install --upgrade pip\nUSER app\nRUN pip install --user flask\n"
    with pytest.raises(FixError, match="USER at line 4"):
        fixed(tmp_path, ctx(text), "LY004")
