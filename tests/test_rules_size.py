"""SZ001-SZ006 (what the image stores that it doesn't need) and their fixes: triggers, quiet cases, exact text."""

from __future__ import annotations

import pytest

from agent_pipelines.engine.domain import FixError
from tests.rulekit import codes, fixed

DEB = "FROM debian:12\n"
ALPINE = "FROM alpine:3.20\n"


# -- SZ001: build toolchains in a single-stage image --------------------------------------------


def test_sz001_triggers_on_a_toolchain_in_the_only_stage(tmp_path):
    text = (
        DEB + "RUN apt-get update && apt-get install -y --no-install-recommends build-essential \\\n"
        "    libpq-dev=15.* && rm -rf /var/lib/apt/lists/*\n"
        'CMD ["python", "-m", "app"]\n'
    )
    assert codes(tmp_path, {"Dockerfile": text}, "SZ001") == [("Dockerfile", 2)]


def test_sz001_is_quiet_on_a_tool_image_without_cmd_or_entrypoint(tmp_path):
    # a code generator: `docker run gen protoc --go_out=. demo.proto`; the toolchain is the point
    text = ALPINE + "WORKDIR /build\nRUN apk add --no-cache protobuf-dev make g++\n"
    assert codes(tmp_path, {"Dockerfile": text}, "SZ001") == []


def test_sz001_is_quiet_in_a_multi_stage_build_and_for_packages_removed_in_the_same_run(tmp_path):
    multi = "FROM python:3.12 AS build\nRUN apt-get install -y gcc\nFROM python:3.12-slim\nCOPY --from=build /w /w\n"
    virtual = (
        ALPINE + 'RUN apk add --no-cache --virtual .build-deps gcc musl-dev && make && apk del .build-deps\nCMD ["x"]\n'
    )
    purged = DEB + 'RUN apt-get install -y gcc libc6 && make && apt-get purge -y gcc\nCMD ["x"]\n'
    assert codes(tmp_path, {"a/Dockerfile": multi, "b/Dockerfile": virtual, "c/Dockerfile": purged}, "SZ001") == []


# -- SZ002: apt-get install without --no-install-recommends --------------------------------------


def test_sz002_triggers_on_apt_get_install_with_recommends(tmp_path):
    text = DEB + "RUN apt-get update && apt-get -y install curl\nRUN apt install --no-install-recommends -y jq\n"
    assert codes(tmp_path, {"Dockerfile": text}, "SZ002") == [("Dockerfile", 2)]


def test_sz002_is_quiet_when_recommends_are_configured_off(tmp_path):
    text = (
        DEB + "RUN echo 'APT::Install-Recommends \"false\";' > /etc/apt/apt.conf.d/no-rec\n"
        "RUN apt-get install -y curl\nRUN apt-get -o APT::Install-Recommends=0 install -y jq\n"
    )
    assert codes(tmp_path, {"Dockerfile": text}, "SZ002") == []


def test_sz002_fix_adds_the_flag_after_each_install_and_keeps_crlf(tmp_path):
    text = DEB.replace("\n", "\r\n") + (
        "RUN apt-get update \\\r\n    && apt-get -y install curl \\\r\n"
        "    && apt-get install --no-install-recommends -y jq\r\n"
    )
    assert fixed(tmp_path, {"Dockerfile": text}, "SZ002") == {
        "Dockerfile": (
            "FROM debian:12\r\nRUN apt-get update \\\r\n    && apt-get -y install --no-install-recommends curl \\\r\n"
            "    && apt-get install --no-install-recommends -y jq\r\n"
        )
    }


# -- SZ003: apk add without --no-cache -------------------------------------------------------------


def test_sz003_triggers_on_apk_add_without_no_cache(tmp_path):
    text = ALPINE + "RUN apk update && apk add curl\nRUN apk --no-cache add git\n"
    assert codes(tmp_path, {"Dockerfile": text}, "SZ003") == [("Dockerfile", 2)]


def test_sz003_is_quiet_with_a_cache_mount_or_a_removed_cache(tmp_path):
    text = (
        ALPINE + "RUN --mount=type=cache,target=/var/cache/apk apk add curl\n"
        "RUN apk add git && rm -rf /var/cache/apk/*\n"
    )
    assert codes(tmp_path, {"Dockerfile": text}, "SZ003") == []


def test_sz003_fix_adds_no_cache_without_a_final_newline(tmp_path):
    text = ALPINE + "RUN apk add --virtual .deps gcc && /sbin/apk add -U curl"
    assert fixed(tmp_path, {"Dockerfile": text}, "SZ003") == {
        "Dockerfile": (ALPINE + "RUN apk add --no-cache --virtual .deps gcc && /sbin/apk add --no-cache -U curl")
    }


# -- SZ004: models and data downloaded at build time -----------------------------------------------


def test_sz004_triggers_on_hub_downloads_weights_and_bucket_copies(tmp_path):
    text = (
        "FROM python:3.12\n"
        "RUN huggingface-cli download org/model --local-dir /models\n"
        "RUN python -c \"from transformers import AutoModel; AutoModel.from_pretrained('org/m')\"\n"
        "RUN curl -fsSLo /m.safetensors https://cdn.example.org/m.safetensors\n"
        "ADD https://huggingface.co/org/m/resolve/main/config.json /models/\n"
        "RUN aws s3 cp s3://bucket/data.parquet /data/\n"
    )
    assert codes(tmp_path, {"Dockerfile": text}, "SZ004") == [("Dockerfile", n) for n in (2, 3, 4, 5, 6)]


def test_sz004_is_quiet_on_tool_downloads(tmp_path):
    text = (
        "FROM debian:12\nRUN curl -fsSL https://deb.nodesource.com/setup_20.x | bash -\n"
        "ADD https://github.com/krallin/tini/releases/download/v0.19.0/tini /tini\n"
    )
    assert codes(tmp_path, {"Dockerfile": text}, "SZ004") == []


# -- SZ005: npm install / yarn install beside a lockfile -------------------------------------------

WEB = 'FROM node:20-slim\nWORKDIR /app\nCOPY . .\nRUN npm install\nCMD ["node", "server.js"]\n'


def test_sz005_triggers_on_npm_install_with_a_lockfile_in_the_context(tmp_path):
    files = {"web/Dockerfile": WEB, "web/package.json": "{}", "web/package-lock.json": "{}"}
    assert codes(tmp_path, files, "SZ005") == [("web/Dockerfile", 4)]


def test_sz005_is_quiet_without_a_lockfile_or_with_package_arguments(tmp_path):
    files = {
        "a/Dockerfile": WEB,
        "a/package.json": "{}",
        "b/Dockerfile": WEB.replace("npm install", "npm install -g pm2"),
        "b/package-lock.json": "{}",
        "c/Dockerfile": "FROM node:20\nCOPY yarn.lock package.json ./\nRUN yarn install --frozen-lockfile\n",
        "c/yarn.lock": "",
    }
    assert codes(tmp_path, files, "SZ005") == []


def test_sz005_is_quiet_when_the_dockerignore_drops_the_lockfile(tmp_path):
    files = {"Dockerfile": WEB, "package.json": "{}", "package-lock.json": "{}", ".dockerignore": "package-lock.json\n"}
    assert codes(tmp_path, files, "SZ005") == []


def test_sz005_fix_uses_npm_ci_and_keeps_options(tmp_path):
    text = WEB.replace("RUN npm install", "RUN npm install --omit=dev && npm install -g pm2")
    files = {"Dockerfile": text, "package.json": "{}", "package-lock.json": "{}"}
    assert fixed(tmp_path, files, "SZ005") == {
        "Dockerfile": WEB.replace("RUN npm install", "RUN npm ci --omit=dev && npm install -g pm2")
    }


def test_sz005_fix_freezes_the_yarn_lockfile(tmp_path):
    text = "FROM node:20\r\nCOPY package.json yarn.lock ./\r\nRUN yarn install --production && yarn\r\n"
    files = {"Dockerfile": text, "package.json": "{}", "yarn.lock": ""}
    assert fixed(tmp_path, files, "SZ005") == {
        "Dockerfile": (
            "FROM node:20\r\nCOPY package.json yarn.lock ./\r\n"
            "RUN yarn install --frozen-lockfile --production && yarn --frozen-lockfile\r\n"
        )
    }


# -- SZ006: apt lists left in the layer -------------------------------------------------------------


def test_sz006_triggers_on_apt_get_update_without_cleanup(tmp_path):
    text = DEB + "RUN apt-get update && apt-get install -y --no-install-recommends curl\n"
    assert codes(tmp_path, {"Dockerfile": text}, "SZ006") == [("Dockerfile", 2)]


def test_sz006_is_quiet_with_cleanup_or_a_lists_mount(tmp_path):
    text = (
        DEB + "RUN apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*\n"
        "RUN --mount=type=cache,target=/var/lib/apt,sharing=locked apt-get update && apt-get install -y jq\n"
    )
    assert codes(tmp_path, {"Dockerfile": text}, "SZ006") == []


def test_sz006_fix_appends_the_cleanup_to_the_last_line(tmp_path):
    text = DEB + 'RUN apt-get update \\\n    && apt-get install -y curl  \nCMD ["bash"]'
    assert fixed(tmp_path, {"Dockerfile": text}, "SZ006") == {
        "Dockerfile": (
            DEB + 'RUN apt-get update \\\n    && apt-get install -y curl && rm -rf /var/lib/apt/lists/*\nCMD ["bash"]'
        )
    }


def test_sz006_fix_merges_a_split_update_before_cleaning(tmp_path):
    text = DEB + "RUN apt-get update\nRUN apt-get install -y curl\n"
    assert fixed(tmp_path, {"Dockerfile": text}, "SZ006") == {
        "Dockerfile": (DEB + "RUN apt-get update \\\n    && apt-get install -y curl && rm -rf /var/lib/apt/lists/*\n")
    }


def test_sz006_fix_refuses_when_a_later_install_relies_on_the_lists(tmp_path):
    text = DEB + "RUN apt-get update && apt-get install -y curl\nCOPY x /x\nRUN apt-get install -y jq\n"
    with pytest.raises(FixError, match="would break the apt-get install at line 4"):
        fixed(tmp_path, {"Dockerfile": text, "x": ""}, "SZ006")
