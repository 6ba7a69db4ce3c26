"""The build graph: images built FROM other services' images, parallel levels, cycles, rollout order."""

from __future__ import annotations

from agent_pipelines.engine.tree import DirTree
from agent_pipelines.pipelines.docker_optimization.model.buildgraph import (
    Edge,
    build_graph,
    build_order_summary,
    context_key,
    normalize_image,
    primary_compose,
)
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from tests.rulekit import write


def graph_of(tmp_path, files):
    return build_graph(Project(DirTree(write(tmp_path, files))))


SHOP = {
    "docker-compose.yml": """\
services:
  base:
    build: ./base
    image: shop/base:latest
  api:
    build: ./api
    depends_on: [db]
  tool:
    build:
      context: .
      dockerfile: tool/Dockerfile
  web:
    build: ./web
    depends_on:
      api:
        condition: service_started
  db:
    image: postgres:16
    healthcheck:
      test: ["CMD", "pg_isready"]
""",
    "base/Dockerfile": "FROM python:3.12-slim\n",
    "api/Dockerfile": 'FROM docker.io/shop/base AS app\nFROM app\nCMD ["python"]\n',
    "tool/Dockerfile": "FROM alpine:3.20\nCOPY --from=shop/base:latest /usr/lib /usr/lib\n",
    "web/Dockerfile": "FROM node:20\nHEALTHCHECK CMD curl -f http://localhost/\n",
}


def test_a_service_built_from_another_services_image_builds_after_it(tmp_path):
    graph = graph_of(tmp_path, SHOP)

    assert graph.built == ["api", "base", "tool", "web"]
    assert graph.edges == [
        Edge("api", "base", "docker.io/shop/base", "FROM", "api/Dockerfile", 1),
        Edge("tool", "base", "shop/base:latest", "COPY --from", "tool/Dockerfile", 2),
    ]
    assert graph.levels == [["base", "web"], ["api", "tool"]]
    assert graph.build_order == ["base", "web", "api", "tool"]
    assert graph.build_cycles == []


def test_stage_names_and_scratch_are_not_images_and_build_args_expand_in_from(tmp_path):
    graph = graph_of(
        tmp_path,
        {
            "compose.yaml": """\
services:
  base:
    build: ./base
    image: registry.local:5000/team/base:1.2
  app:
    build:
      context: ./app
      args:
        BASE_TAG: "1.2"
""",
            "base/Dockerfile": "FROM scratch\nCOPY x /x\n",
            "app/Dockerfile": (
                "ARG BASE_TAG=0.9\nFROM registry.local:5000/team/base:${BASE_TAG} AS build\n"
                "FROM build AS final\nCOPY --from=build /x /x\nCOPY --from=0 /x /y\n"
            ),
        },
    )

    assert [(e.service, e.on, e.ref) for e in graph.edges] == [("app", "base", "registry.local:5000/team/base:1.2")]
    assert graph.levels == [["base"], ["app"]]


def test_without_the_build_arg_the_arg_default_names_another_image(tmp_path):
    graph = graph_of(
        tmp_path,
        {
            "compose.yaml": "services:\n  base:\n    build: ./base\n    image: team/base:2\n  app:\n    build: ./app\n",
            "base/Dockerfile": "FROM debian\n",
            "app/Dockerfile": "ARG TAG=1\nFROM team/base:${TAG}\n",
        },
    )

    assert graph.edges == [] and graph.levels == [["app", "base"]]


def test_compose_additional_contexts_naming_a_service_is_a_build_dependency(tmp_path):
    graph = graph_of(
        tmp_path,
        {
            "compose.yaml": """\
services:
  base:
    build: ./base
  app:
    build:
      context: ./app
      additional_contexts:
        base: service:base
""",
            "base/Dockerfile": "FROM debian\n",
            "app/Dockerfile": "FROM base\n",
        },
    )

    assert [(e.service, e.on, e.via) for e in graph.edges] == [("app", "base", "additional_contexts")]
    assert graph.levels == [["base"], ["app"]]


def test_a_build_cycle_is_reported_and_its_services_still_get_one_last_level(tmp_path):
    graph = graph_of(
        tmp_path,
        {
            "compose.yaml": """\
services:
  a:
    build: ./a
    image: x/a
  b:
    build: ./b
    image: x/b
  c:
    build: ./c
  d:
    build: ./d
    image: x/d
""",
            "a/Dockerfile": "FROM x/b\n",
            "b/Dockerfile": "FROM x/a\n",
            "c/Dockerfile": "FROM debian\n",
            "d/Dockerfile": "FROM x/d\n",
        },
    )

    assert graph.build_cycles == [["a", "b"], ["d"]]
    assert graph.levels == [["c"], ["a", "b", "d"]]
    assert sorted(graph.build_order) == ["a", "b", "c", "d"]


def test_runtime_order_follows_depends_on_and_survives_a_cycle(tmp_path):
    graph = graph_of(
        tmp_path,
        {
            "compose.yaml": """\
services:
  web:
    image: web
    depends_on: [api, ghost]
  api:
    image: api
    depends_on:
      db: {condition: service_healthy}
  db:
    image: db
  x:
    image: x
    depends_on: [y]
  y:
    image: y
    depends_on: [x]
"""
        },
    )

    assert graph.depends_on["web"] == ("api",)  # an unknown name is dropped
    assert graph.runtime_order == ["db", "api", "web", "x", "y"]
    assert graph.runtime_cycles == [["x", "y"]]
    assert graph.levels == []


def test_healthchecks_come_from_compose_or_the_built_stage_of_the_dockerfile(tmp_path):
    graph = graph_of(
        tmp_path,
        {
            "compose.yaml": """\
services:
  a:
    image: a
    healthcheck: {test: ["CMD", "true"]}
  b:
    image: b
    healthcheck: {disable: true}
  c:
    build: {context: ./c, target: dev}
  d:
    build: ./c
  e:
    build: ./e
""",
            "c/Dockerfile": "FROM debian AS dev\nHEALTHCHECK CMD true\nFROM debian AS prod\n",
            "e/Dockerfile": "FROM debian\nHEALTHCHECK CMD true\nHEALTHCHECK NONE\n",
        },
    )

    assert {n: s.healthcheck for n, s in graph.services.items()} == {
        "a": "compose",
        "b": "",
        "c": "Dockerfile",
        "d": "",
        "e": "",
    }


def test_image_names_compare_the_way_docker_resolves_them():
    assert normalize_image("docker.io/library/redis") == "redis:latest" == normalize_image("redis:latest")
    assert normalize_image("index.docker.io/shop/base") == "shop/base:latest"
    assert normalize_image("localhost:5000/base") == "localhost:5000/base:latest"
    assert normalize_image("shop/base@sha256:abc") == "shop/base@sha256:abc"
    assert context_key("docker.io/shop/base:latest") == "shop/base" and context_key("shop/base:2") == "shop/base:2"


def test_the_primary_compose_file_is_the_shallowest_with_the_most_services(tmp_path):
    project = Project(
        DirTree(
            write(
                tmp_path,
                {
                    "docker-compose.override.yml": "services:\n  a:\n    image: a\n",
                    "docker-compose.yml": "services:\n  a:\n    image: a\n  b:\n    image: b\n",
                    "sub/compose.yaml": "services:\n  a:\n    image: a\n  b:\n    image: b\n  c:\n    image: c\n",
                },
            )
        )
    )
    assert primary_compose(project) == "docker-compose.yml"


def test_the_summary_explains_levels_dependencies_and_health_gates(tmp_path):
    project = Project(DirTree(write(tmp_path, SHOP)))

    assert build_order_summary(project) == [
        "4 services build images, in 2 levels of the build graph:",
        "- level 1, in parallel: base, web",
        "- level 2, in parallel: api, tool; api builds FROM docker.io/shop/base (built by base, api/Dockerfile:1); "
        "tool builds COPY --from shop/base:latest (built by base, tool/Dockerfile:2)",
        "rollout order (compose depends_on, dependencies first, one service at a time): "
        "base -> db -> tool -> api -> web",
        "- waits for healthy (compose healthcheck): db",
        "- waits for healthy (Dockerfile HEALTHCHECK): web",
        "- no healthcheck, waits only for running: base, tool, api",
        "- a service that isn't healthy in time is rolled back to its :previous image and the rollout stops there",
    ]


def test_the_summary_of_a_cycle_says_it_cannot_be_built(tmp_path):
    project = Project(
        DirTree(
            write(
                tmp_path,
                {
                    "compose.yaml": "services:\n  a:\n    build: ./a\n    image: x/a\n  b:\n    build: ./b\n    image: x/b\n",
                    "a/Dockerfile": "FROM x/b\n",
                    "b/Dockerfile": "FROM x/a\n",
                },
            )
        )
    )

    lines = build_order_summary(project)
    assert lines[1].startswith("- level 1 (a build cycle, no order works): a, b; a builds FROM x/b")
    assert "- build cycle: a -> b -> a: these images can't be built; break the cycle in their Dockerfiles" in lines
