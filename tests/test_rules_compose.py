"""Compose rules (CO001-CO009) and their round-trip fixes, which change only the lines they mean to."""

from __future__ import annotations

import difflib

import pytest
import yaml

from agent_pipelines.engine.artifacts import Design
from agent_pipelines.engine.domain import AlreadyResolved, Declined
from agent_pipelines.pipelines.docker_optimization.analysis import analyze
from agent_pipelines.pipelines.docker_optimization.domain import DockerDomain, diff_paths, plain
from agent_pipelines.pipelines.docker_optimization.model import compose
from agent_pipelines.pipelines.docker_optimization.rules.compose_health import healthcheck_programs
from tests.rulekit import codes, fixed, write

COMPOSE = """\
# the stack
services:
  api:
    image: "api:1"   # pinned by CI
    deploy:
      resources:
        limits:
          memory: 512M
  cache:
    image: 'redis:7'
    cpus: 0.5
"""


def test_co001_triggers_only_on_services_without_a_cpu_limit(tmp_path):
    assert codes(tmp_path, {"compose.yaml": COMPOSE}, "CO001") == [("compose.yaml", 3)]


def test_fix_adds_limits_from_the_memory_policy_and_keeps_every_other_byte(tmp_path):
    out = fixed(tmp_path, {"compose.yaml": COMPOSE}, "CO001")
    assert out == {
        "compose.yaml": COMPOSE.replace(
            "          memory: 512M\n",
            "          memory: 512M\n          cpus: '0.5'\n        reservations:\n          cpus: '0.25'\n",
        )
    }


def cpu_task(root, files):
    write(root, files)
    domain = DockerDomain()
    [task] = domain.plan([f for f in domain.analyze(root) if f.rule == "CO001"], ["compose"], True, root).tasks
    return domain, task


def test_cpu_limits_guessed_from_a_memory_limit_make_the_task_unsafe_and_it_says_the_values(tmp_path):
    _, task = cpu_task(tmp_path, {"compose.yaml": COMPOSE})
    assert task.applicability.value == "unsafe"
    assert task.rationale.endswith(
        "CPU limits to write (unsafe: values not all configured): api: cpus 0.5, reservation 0.25 "
        "(derived from its memory limit 512M (1 CPU per GiB, reservation half))."
    )


def test_cpu_limits_from_pipeline_yaml_make_the_task_safe_and_are_written_as_given(tmp_path):
    config = "policy:\n  services:\n    api: {cpus: '1.5'}\n"
    domain, task = cpu_task(tmp_path, {"compose.yaml": COMPOSE, ".pipeline.yaml": config})
    assert task.applicability.value == "safe"
    assert "api: cpus 1.5 (policy.services.api in .pipeline.yaml)" in task.rationale
    domain.apply(task, tmp_path, Design())
    # the configured limit, and no reservation: none was configured, so none is made up
    assert (tmp_path / "compose.yaml").read_text() == COMPOSE.replace(
        "          memory: 512M\n", "          memory: 512M\n          cpus: '1.5'\n"
    )


def test_a_service_with_neither_policy_nor_memory_limit_gets_no_invented_cpu_limit(tmp_path):
    text = "services:\n  redis:\n    image: redis:7\n"
    domain, task = cpu_task(tmp_path, {"compose.yaml": text})
    assert task.applicability.value == "unsafe"
    assert "redis: left alone (no policy.services.redis.cpus in .pipeline.yaml and no memory limit" in task.rationale
    with pytest.raises(Declined, match="no CPU limit to write in compose.yaml without inventing one") as declined:
        domain.apply(task, tmp_path, Design())
    assert declined.value.action.startswith("set policy.services.<name>.cpus in .pipeline.yaml")
    assert (tmp_path / "compose.yaml").read_text() == text


def test_the_design_never_reads_the_cores_of_the_machine_running_the_tool(tmp_path):
    write(tmp_path, {"compose.yaml": COMPOSE})
    domain = DockerDomain()
    design = domain.design(tmp_path, [], domain.plan([], ["compose"], False, tmp_path))
    assert "host_cores" not in design.policies and "host" not in design.policies["cpu"]


def test_a_wrong_policy_entry_is_a_note_and_gives_no_value(tmp_path):
    config = "policy:\n  services:\n    api: {cpus: lots, memory: 1G}\n"
    write(tmp_path, {"compose.yaml": COMPOSE, ".pipeline.yaml": config})
    from agent_pipelines.pipelines.docker_optimization.analysis import run_analysis

    notes = [n.message for n in run_analysis(tmp_path, hadolint=False).notes]
    assert ".pipeline.yaml: policy.services['api']: cpus must be a positive number of CPUs, got 'lots'" in notes
    assert ".pipeline.yaml: policy.services['api']: unknown key 'memory' (known: cpus, cpus_reservation)" in notes
    _, task = cpu_task(tmp_path, {})
    assert "api: cpus 0.5, reservation 0.25 (derived from its memory limit 512M" in task.rationale


# -- CO002 memory limit ------------------------------------------------------------------------


def test_co002_triggers_only_on_services_without_a_memory_limit(tmp_path):
    text = (
        "services:\n"
        "  api:\n    image: api\n    deploy: {resources: {limits: {memory: 512M}}}\n"
        "  legacy:\n    image: legacy\n    mem_limit: 256m\n"
        "  worker:\n    image: worker\n"
    )
    assert codes(tmp_path, {"compose.yaml": text}, "CO002") == [("compose.yaml", 8)]


# -- CO003 depends_on without service_healthy ---------------------------------------------------

HEALTHY_REDIS = '  redis:\n    image: redis:7\n    healthcheck:\n      test: ["CMD", "redis-cli", "ping"]\n'


def test_co003_triggers_at_the_dependency_entry(tmp_path):
    text = "services:\n  api:\n    image: api\n    depends_on:\n      - redis\n" + HEALTHY_REDIS
    assert codes(tmp_path, {"compose.yaml": text}, "CO003") == [("compose.yaml", 5)]


def test_co003_triggers_on_an_explicit_service_started_too(tmp_path):
    text = (
        "services:\n  api:\n    image: api\n    depends_on:\n"
        "      redis: {condition: service_started}\n" + HEALTHY_REDIS
    )
    assert codes(tmp_path, {"compose.yaml": text}, "CO003") == [("compose.yaml", 5)]


def test_co003_is_quiet_when_healthy_is_awaited_or_there_is_no_healthcheck(tmp_path):
    text = (
        "services:\n"
        "  api:\n    image: api\n    depends_on:\n      redis: {condition: service_healthy}\n"
        "  web:\n    image: web\n    depends_on: [api]\n"
        "  job:\n    image: job\n    depends_on: [off]\n"
        "  off:\n    image: off\n    healthcheck: {disable: true}\n" + HEALTHY_REDIS
    )
    assert codes(tmp_path, {"compose.yaml": text}, "CO003") == []


def test_co003_counts_a_healthcheck_from_the_built_dockerfile(tmp_path):
    files = {
        "compose.yaml": "services:\n  web:\n    image: web\n    depends_on: [api]\n  api:\n    build: ./api\n",
        "api/Dockerfile": "FROM python:3.12\nHEALTHCHECK CMD python -c 'print(1)'\nCOPY app.py .\n",
        "api/app.py": "x\n",
    }
    assert codes(tmp_path, files, "CO003") == [("compose.yaml", 4)]


def test_co003_a_final_stage_with_healthcheck_none_has_none(tmp_path):
    files = {
        "compose.yaml": "services:\n  web:\n    image: web\n    depends_on: [api]\n  api:\n    build: ./api\n",
        "api/Dockerfile": "FROM python:3.12 AS base\nHEALTHCHECK CMD true\nFROM base\nHEALTHCHECK NONE\n",
    }
    assert codes(tmp_path, files, "CO003") == []


def test_fix_rewrites_a_block_list_to_the_long_syntax(tmp_path):
    text = (
        "services:\n"
        "  api:\n"
        "    image: api\n"
        "    depends_on:\n"
        "      - redis  # the cache\n"
        "      - mail\n"
        "\n"
        "  mail:\n"
        "    image: mailhog\n" + HEALTHY_REDIS
    )
    assert fixed(tmp_path, {"compose.yaml": text}, "CO003") == {
        "compose.yaml": (
            "services:\n"
            "  api:\n"
            "    image: api\n"
            "    depends_on:\n"
            "      redis:   # the cache\n"  # the comment keeps its column
            "        condition: service_healthy\n"
            "      mail:\n"
            "        condition: service_started\n"
            "\n"
            "  mail:\n"
            "    image: mailhog\n" + HEALTHY_REDIS
        )
    }


def test_fix_keeps_a_flow_list_on_its_line(tmp_path):
    text = "services:\n  api:\n    image: api\n    depends_on: [redis]\n" + HEALTHY_REDIS
    assert fixed(tmp_path, {"compose.yaml": text}, "CO003") == {
        "compose.yaml": text.replace("depends_on: [redis]", "depends_on: {redis: {condition: service_healthy}}")
    }


def test_fix_changes_only_the_condition_in_the_long_syntax(tmp_path):
    text = (
        "services:\n"
        "  api:\n"
        "    image: api\n"
        "    depends_on:\n"
        "      db:\n"
        "        condition: service_completed_successfully\n"
        "      redis:\n"
        "        restart: true\n"
        "        condition: service_started   # was enough before\n"
        "  db:\n    image: migrate\n" + HEALTHY_REDIS
    )
    assert fixed(tmp_path, {"compose.yaml": text}, "CO003") == {
        "compose.yaml": text.replace("condition: service_started   #", "condition: service_healthy   #")
    }


def test_the_example_monorepo_waits_for_a_healthy_redis(tmp_path, example_repo):
    before = (example_repo / "docker-compose.yml").read_text()
    out = fixed(example_repo, {}, "CO003")
    assert out == {
        "docker-compose.yml": before.replace(
            "    depends_on:\n      - redis\n", "    depends_on:\n      redis:\n        condition: service_healthy\n"
        )
    }


REAL_WORLD = """\
# Production-like stack
x-defaults: &defaults
    restart: unless-stopped
    logging:
        driver: "json-file"
        options: {max-size: "10m", max-file: "3"}

x-deps: &deps
    - db

services:
    api:
        <<: *defaults
        image: 'shop/api:dev'
        ports: ["8000:8000"]   # public
        depends_on: [db, cache]   # both must be up
        environment:
            DATABASE_URL: "postgres://db/shop"

    worker:
        <<: *defaults
        image: "shop/worker:dev"
        command: ["python", "-m", "worker"]
        depends_on:
            # the queue
            - cache
            - mail  # no healthcheck

    cron:
        <<: *defaults
        image: shop/cron
        depends_on: *deps

    mail:
        image: mailhog/mailhog

    db:
        <<: *defaults
        image: "postgres:16"
        healthcheck:
            test: ["CMD-SHELL", "pg_isready -U postgres"]
            interval: 5s

    cache:
        image: 'redis:7'
        healthcheck:
            test: ["CMD", "redis-cli", "ping"]
"""


def _changed(before: str, after: str) -> tuple[list[str], list[str]]:
    removed, added = [], []
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0):
        if line.startswith("-") and not line.startswith("---"):
            removed.append(line[1:])
        elif line.startswith("+") and not line.startswith("+++"):
            added.append(line[1:])
    return removed, added


def test_fix_on_a_real_world_file_changes_only_the_dependency_lines(tmp_path):
    assert codes(tmp_path, {"compose.yaml": REAL_WORLD}, "CO003") == [
        ("compose.yaml", 16),
        ("compose.yaml", 16),
        ("compose.yaml", 26),
        ("compose.yaml", 32),
    ]
    after = fixed(tmp_path, {}, "CO003")["compose.yaml"]
    assert _changed(REAL_WORLD, after) == (
        [
            "        depends_on: [db, cache]   # both must be up",
            "            - cache",
            "            - mail  # no healthcheck",
            "        depends_on: *deps",
        ],
        [
            "        depends_on: {db: {condition: service_healthy}, cache: {condition: service_healthy}} # both must be up",
            "            cache:",
            "                condition: service_healthy",
            "            mail:   # no healthcheck",
            "                condition: service_started",
            "        depends_on:",
            "            db:",
            "                condition: service_healthy",
        ],
    )
    # what the reviewer checks: schema-valid, and only services/*/depends_on differs in the parsed document
    assert compose.schema_errors(compose.load("compose.yaml", after).data) == []
    changed = diff_paths(plain(compose.load("c", REAL_WORLD).data), plain(compose.load("c", after).data))
    assert changed == [
        ("services", "api", "depends_on"),
        ("services", "cron", "depends_on"),
        ("services", "worker", "depends_on"),
    ]
    assert codes(tmp_path, {}, "CO003") == []


def test_fix_gives_a_merged_dependency_its_own_copy_and_rewrites_a_shared_one_once(tmp_path):
    text = (
        "x-app: &app\n"
        "  depends_on:\n"
        "    - db\n"
        "services:\n"
        "  api:\n"
        "    <<: *app\n"
        "    image: api\n"
        "  worker:\n"
        "    image: worker\n"
        "    depends_on: &shared\n"
        "      db: {condition: service_started, restart: true}\n"
        "  beat:\n"
        "    image: beat\n"
        "    depends_on: *shared\n"
        "  db:\n"
        "    image: postgres\n"
        '    healthcheck: {test: ["CMD", "pg_isready"]}\n'
    )
    assert fixed(tmp_path, {"compose.yaml": text}, "CO003") == {
        "compose.yaml": text.replace(
            "    image: api\n", "    image: api\n    depends_on:\n      db:\n        condition: service_healthy\n"
        ).replace("db: {condition: service_started, restart: true}", "db: {condition: service_healthy, restart: true}")
    }


# -- CO004 healthcheck tool missing from the image ---------------------------------------------


def _tool_files(dockerfile: str, test: str = '["CMD", "curl", "-f", "http://localhost:8000/health"]') -> dict:
    return {
        "compose.yaml": f"services:\n  api:\n    build: ./api\n    healthcheck:\n      test: {test}\n",
        "api/Dockerfile": dockerfile,
    }


def test_co004_triggers_on_curl_in_a_slim_python_image(tmp_path):
    pytest.importorskip("agent_pipelines.pipelines.docker_optimization.model.image_tools")
    files = _tool_files("FROM python:3.12-slim\nCOPY . .\n")
    assert codes(tmp_path, files, "CO004") == [("compose.yaml", 5)]


def test_co004_reads_shell_commands_too(tmp_path):
    pytest.importorskip("agent_pipelines.pipelines.docker_optimization.model.image_tools")
    files = _tool_files("FROM python:3.12-slim\n", '"wget -qO- http://localhost:8000 || exit 1"')
    assert codes(tmp_path, files, "CO004") == [("compose.yaml", 5)]


def test_co004_is_quiet_when_the_dockerfile_installs_it_or_the_base_is_unknown(tmp_path):
    pytest.importorskip("agent_pipelines.pipelines.docker_optimization.model.image_tools")
    installs = "FROM python:3.12-slim\nRUN apt-get update && apt-get install -y curl\n"
    assert codes(tmp_path, _tool_files(installs), "CO004") == []
    assert codes(tmp_path, _tool_files("FROM ghcr.io/acme/base:1\n"), "CO004") == []


def test_healthcheck_programs_skip_builtins_and_assignments():
    assert healthcheck_programs(["CMD", "/usr/bin/curl", "-f", "x"]) == ["curl"]
    assert healthcheck_programs(["CMD-SHELL", "A=1 pg_isready -U x && test -f /ok || exit 1"]) == ["pg_isready"]
    assert healthcheck_programs(["NONE"]) == []


# -- CO005 restart policy, CO009 log rotation ---------------------------------------------------


def test_co005_triggers_on_long_running_services_without_a_restart_policy(tmp_path):
    text = (
        "services:\n"
        "  api:\n    image: api\n    restart: unless-stopped\n"
        "  worker:\n    image: worker\n    deploy: {restart_policy: {condition: on-failure}}\n"
        "  migrate:\n    image: api\n"
        "  web:\n    image: web\n    depends_on: {migrate: {condition: service_completed_successfully}}\n"
    )
    assert codes(tmp_path, {"compose.yaml": text}, "CO005") == [("compose.yaml", 10)]


def test_co009_triggers_without_max_size_on_json_file(tmp_path):
    text = (
        "services:\n"
        "  api:\n    image: api\n    logging: {options: {max-size: 10m}}\n"
        "  worker:\n    image: worker\n    logging: {driver: local}\n"
        "  web:\n    image: web\n    logging: {driver: json-file}\n"
    )
    assert codes(tmp_path, {"compose.yaml": text}, "CO009") == [("compose.yaml", 8)]


# -- compose variant files: one finding per defect, patches judged merged -------------------------

MAIN = (
    "services:\n"
    "  api:\n    image: api\n    restart: always\n    deploy: {resources: {limits: {memory: 256M}}}\n"
    "  web:\n    image: web\n"
)
# A variant stacked on the main file (`-f compose.yaml -f compose.full.yaml`): it patches api, adds a service.
FULL = (
    "services:\n"
    "  api:\n    environment: [KAFKA_ADDR]\n"
    "  kafka:\n    image: kafka\n    restart: always\n    deploy: {resources: {limits: {memory: 1G}}}\n"
)
# An alternative that defines web completely again, without the limits either.
TESTS = "services:\n  web:\n    image: web\n    command: [npm, test]\n"


def test_a_patch_in_a_variant_file_has_the_limits_and_restart_of_the_service_it_patches(tmp_path):
    files = {"compose.yaml": MAIN, "compose.full.yaml": FULL}
    assert codes(tmp_path, files, "CO002") == [("compose.yaml", 6)]
    assert codes(tmp_path, files, "CO005") == [("compose.yaml", 6)]


def test_a_finding_repeated_across_variant_files_is_reported_once_on_the_main_file(tmp_path):
    write(tmp_path, {"compose.yaml": MAIN, "compose.full.yaml": FULL, "compose.tests.yaml": TESTS})
    cpu = sorted((f.file, f.line, f.message) for f in analyze(tmp_path) if f.rule == "CO001")
    assert cpu == [
        ("compose.full.yaml", 4, "service kafka has no CPU limit"),
        ("compose.yaml", 2, "service api has no CPU limit (the same in compose.full.yaml:2)"),
        ("compose.yaml", 6, "service web has no CPU limit (the same in compose.tests.yaml:2)"),
    ]


def test_variants_in_other_directories_are_other_projects(tmp_path):
    files = {"shop/compose.yaml": TESTS, "blog/compose.yaml": TESTS}
    assert codes(tmp_path, files, "CO001") == [("blog/compose.yaml", 2), ("shop/compose.yaml", 2)]


def test_an_ignore_pragma_in_the_main_file_leaves_the_variant_reported(tmp_path):
    main = MAIN.replace("  web:\n", "  web:   # pipeline ignore=CO001\n")
    assert codes(tmp_path, {"compose.yaml": main, "compose.tests.yaml": TESTS}, "CO001") == [
        ("compose.tests.yaml", 2),
        ("compose.yaml", 2),
    ]


def test_cpu_fix_writes_the_reported_file_and_leaves_a_patch_to_the_service_it_patches(tmp_path):
    config = "policy:\n  services:\n    api: {cpus: '0.5'}\n    web: {cpus: '0.25'}\n"
    out = fixed(tmp_path, {"compose.yaml": MAIN, "compose.full.yaml": FULL, ".pipeline.yaml": config}, "CO001")
    assert sorted(out) == ["compose.full.yaml", "compose.yaml"]
    assert out["compose.full.yaml"].startswith("services:\n  api:\n    environment: [KAFKA_ADDR]\n  kafka:\n")
    assert yaml.safe_load(out["compose.full.yaml"])["services"]["api"] == {"environment": ["KAFKA_ADDR"]}
    assert "cpus" in yaml.safe_load(out["compose.full.yaml"])["services"]["kafka"]["deploy"]["resources"]["limits"]
    assert all(
        "cpus" in yaml.safe_load(out["compose.yaml"])["services"][s]["deploy"]["resources"]["limits"]
        for s in ("api", "web")
    )


# -- CO006 cache_from nobody builds -------------------------------------------------------------


def test_co006_triggers_on_a_plain_image_name_no_service_builds(tmp_path):
    text = (
        "services:\n"
        "  api:\n"
        "    image: shop/api\n"
        "    build:\n"
        "      context: .\n"
        "      cache_from:\n"
        "        - shop/api:latest\n"
        "        - shop_api\n"
        "        - type=registry,ref=shop/api:cache\n"
        "        - ghcr.io/shop/api:cache\n"
        "        - type=gha\n"
    )
    files = {"compose.yaml": text, "Dockerfile": "FROM python:3.12\n"}
    assert codes(tmp_path, files, "CO006") == [("compose.yaml", 8)]


# -- CO007 one Dockerfile, several contexts -----------------------------------------------------


def test_co007_points_at_the_service_whose_context_breaks_the_copy(tmp_path):
    files = {
        "compose.yaml": (
            "services:\n"
            "  api:\n    build: {context: ., dockerfile: services/api/Dockerfile}\n"
            "  api-dev:\n    build: ./services/api\n"
        ),
        "services/api/Dockerfile": "FROM python:3.12\nCOPY services/api/app.py /app/\n",
        "services/api/app.py": "x\n",
    }
    assert codes(tmp_path, files, "CO007") == [("compose.yaml", 4)]
    assert codes(tmp_path, {}, "CX003") == []  # reported once, by CO007


def test_co007_is_quiet_when_every_context_works(tmp_path):
    files = {
        "compose.yaml": (
            "services:\n"
            "  api:\n    build: {context: ., dockerfile: api/Dockerfile}\n"
            "  again:\n    build: {context: ., dockerfile: api/Dockerfile, target: dev}\n"
        ),
        "api/Dockerfile": "FROM python:3.12\nCOPY api/app.py /app/\n",
        "api/app.py": "x\n",
    }
    assert codes(tmp_path, files, "CO007") == []


# -- CO008 schema ------------------------------------------------------------------------------


def test_co008_reports_each_schema_violation_at_its_key(tmp_path):
    text = (
        "services:\n"
        "  api:\n"
        "    image: api\n"
        "    depends_on:\n"
        "      redis: {restart: true}\n"
        "    imagee: typo\n"
        "  redis:\n    image: redis\n"
    )
    found = [f for f in analyze(write(tmp_path, {"compose.yaml": text})) if f.rule == "CO008"]
    assert [(f.line, f.message) for f in found] == [
        (2, "services/api: unknown key 'imagee'"),
        (5, "services/api/depends_on/redis: 'condition' is a required property"),
    ]


def test_co008_leaves_a_yaml_error_to_px002(tmp_path):
    found = {f.rule for f in analyze(write(tmp_path, {"compose.yaml": "services:\n  api: [\n"}))}
    assert "PX002" in found and "CO008" not in found


def test_px002_leaves_a_comment_only_variant_stacked_beside_the_main_file(tmp_path):
    extras = (
        "# Extras layer: override this file in your fork.\n"
        "# Usage: docker compose -f compose.yaml -f compose.extras.yaml up\n"
    )
    assert codes(tmp_path / "a", {"compose.yaml": TESTS, "compose.extras.yaml": extras}, "PX002") == []
    assert codes(tmp_path / "b", {"compose.yaml": extras}, "PX002") == [("compose.yaml", 0)]


def test_added_keys_go_above_the_blank_line_and_comment_that_separate_services(tmp_path):
    text = (
        "x-defaults: &defaults\n"
        "  depends_on: [db]\n"
        "  cpus: 1\n"
        "services:\n"
        "  api:\n"
        "    image: api\n"
        "    deploy:\n"
        "      resources:\n"
        "        limits:\n"
        "          memory: 512M\n"
        "\n"
        "  # the worker\n"
        "  worker:\n"
        "    <<: *defaults\n"
        "    image: worker\n"
        "\n"
        "  db:\n"
        "    image: postgres\n"
        '    healthcheck: {test: ["CMD", "pg_isready"]}\n'
    )
    config = "policy:\n  services:\n    db: {cpus: '1', cpus_reservation: '0.5'}\n"
    after_cpu = fixed(tmp_path, {"compose.yaml": text, ".pipeline.yaml": config}, "CO001")["compose.yaml"]
    assert after_cpu == text.replace(
        "          memory: 512M\n\n",
        "          memory: 512M\n          cpus: '0.5'\n        reservations:\n          cpus: '0.25'\n\n",
    ).replace(
        '    healthcheck: {test: ["CMD", "pg_isready"]}\n',
        '    healthcheck: {test: ["CMD", "pg_isready"]}\n'
        "    deploy:\n      resources:\n        limits:\n          cpus: '1'\n        reservations:\n          cpus: '0.5'\n",
    )
    # worker inherits depends_on from x-defaults: it gets its own, above the blank line; x-defaults stays
    after_deps = fixed(tmp_path, {}, "CO003")["compose.yaml"]
    assert after_deps == after_cpu.replace(
        "    image: worker\n\n", "    image: worker\n    depends_on:\n      db:\n        condition: service_healthy\n\n"
    )


def test_fix_says_already_resolved_when_the_dependency_waits_for_health_now(tmp_path):
    text = "services:\n  api:\n    image: api\n    depends_on: [redis]\n" + HEALTHY_REDIS
    write(tmp_path, {"compose.yaml": text})
    domain = DockerDomain()
    plan = domain.plan([f for f in domain.analyze(tmp_path) if f.rule == "CO003"], ["compose"], False, tmp_path)
    domain.apply(plan.tasks[0], tmp_path, Design())
    with pytest.raises(AlreadyResolved):
        domain.apply(plan.tasks[0], tmp_path, Design())
