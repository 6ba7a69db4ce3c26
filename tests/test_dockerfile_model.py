"""The Dockerfile model answers "which stage is this one built from" once, for every rule and fix."""

from __future__ import annotations

from agent_pipelines.pipelines.docker_optimization.model.cache_mounts import preceding
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
from agent_pipelines.pipelines.docker_optimization.model.image_tools import stage_chain
from agent_pipelines.pipelines.docker_optimization.model.shell import workdir_at

TEXT = (
    "FROM python:3.12 AS Base\n"
    "WORKDIR /app\n"
    "ENV PIP_CACHE_DIR=/cache\n"
    "FROM base AS build\n"
    "RUN pip install -r requirements.txt\n"
    "FROM alpine:3.20\n"
    "RUN true\n"
)


def test_a_stage_built_from_an_earlier_stage_names_it_and_an_image_names_none():
    df = Dockerfile.parse("Dockerfile", TEXT)
    assert [df.parent(s.index) for s in df.stages] == [None, 0, None]
    assert stage_chain(df, 1) == [0, 1]


def test_workdir_and_the_instructions_before_a_run_follow_the_parent_stage():
    df = Dockerfile.parse("Dockerfile", TEXT)
    build_run, final_run = df.of("RUN")
    assert workdir_at(df, build_run) == "/app" and workdir_at(df, final_run) == "/"
    assert [i.cmd for i in preceding(df, build_run)] == ["FROM", "WORKDIR", "ENV", "FROM"]
    assert [i.cmd for i in preceding(df, final_run)] == ["FROM"]


def test_a_stage_built_from_another_runs_as_the_user_that_stage_ends_with():
    df = Dockerfile.parse(
        "Dockerfile",
        "FROM python:3.12 AS base\nUSER app\nFROM base\nRUN pip install x\nUSER root\nRUN apt-get update\n",
    )
    first, second = df.of("RUN")
    assert df.user_at(first) == "app" and df.user_at(second) == "root"


def test_env_at_follows_the_parent_stage_and_names_the_env_that_set_each_value():
    df = Dockerfile.parse("Dockerfile", TEXT)
    build_run, final_run = df.of("RUN")
    env = df.env_at(build_run)
    assert {k: v for k, (v, _) in env.items()} == {"PIP_CACHE_DIR": "/cache"}
    assert env["PIP_CACHE_DIR"][1].start_line == 3
    assert df.env_at(final_run) == {}
    assert df.workdir_at(build_run) == "/app"
