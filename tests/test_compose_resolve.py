"""Compose files resolved as `docker compose` resolves them: each example is a real tree in a temp directory."""

from __future__ import annotations

import shutil

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_pipelines.engine.tree import DirTree
from agent_pipelines.pipelines.docker_optimization.analysis import analyze
from agent_pipelines.pipelines.docker_optimization.model.compose_resolve import interpolate, parse_env
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from tests.rulekit import write

DOCKERFILE = "FROM python:3.12-slim\nCOPY app.py /app/\n"


def contexts(root, files: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """Dockerfile -> [(context, compose file that owns the service)] for the tree made of ``files``."""
    project = Project(DirTree(write(root, files)))
    return {
        df: [(c.dir, f) for c in project.contexts_of(df) for f in c.compose_files] for df in sorted(project.dockerfiles)
    }


def test_the_override_file_is_merged_onto_its_base_and_changes_the_context(tmp_path):
    found = contexts(
        tmp_path,
        {
            "compose.yaml": "services:\n  api:\n    build: ./api\n    image: shop/api\n",
            "compose.override.yaml": "services:\n  api:\n    build:\n      context: .\n      dockerfile: api/Dockerfile\n",
            "api/Dockerfile": DOCKERFILE,
        },
    )
    # `docker compose -f compose.yaml` builds from api/, plain `docker compose` (with the override) from the root.
    assert found == {"api/Dockerfile": [(".", "compose.override.yaml"), ("api", "compose.yaml")]}


def test_an_override_that_only_adds_args_keeps_the_base_context_and_merges_the_args(tmp_path):
    project = Project(
        DirTree(
            write(
                tmp_path,
                {
                    "docker-compose.yml": "services:\n  api:\n    build:\n      context: api\n      args: {A: '1', B: '2'}\n",
                    "docker-compose.override.yml": "services:\n  api:\n    build:\n      args: {B: '3'}\n",
                    "api/Dockerfile": DOCKERFILE,
                },
            )
        )
    )
    (ctx,) = project.contexts
    assert (ctx.dir, ctx.dockerfile, ctx.compose_files) == (
        "api",
        "api/Dockerfile",
        ["docker-compose.override.yml", "docker-compose.yml"],
    )
    override = next(c for c in project.composes if c.path == "docker-compose.override.yml")
    (build,) = override.builds
    assert build.args == {"A": "1", "B": "3"}
    assert (build.file, build.line) == ("docker-compose.override.yml", 2)  # where the merged build was written


def test_reset_removes_an_inherited_key(tmp_path):
    project = Project(
        DirTree(
            write(
                tmp_path,
                {
                    "compose.yaml": "services:\n  api:\n    build: {context: ., dockerfile: api/Dockerfile, target: dev}\n",
                    "compose.override.yaml": "services:\n  api:\n    build:\n      target: !reset null\n",
                    "api/Dockerfile": DOCKERFILE,
                },
            )
        )
    )
    targets = {c.path: [b.target for b in c.builds] for c in project.composes}
    assert targets == {"compose.override.yaml": [""], "compose.yaml": ["dev"]}


def test_include_brings_the_included_files_services_with_paths_relative_to_it(tmp_path):
    found = contexts(
        tmp_path,
        {
            "compose.yaml": "include:\n  - infra/db.yaml\nservices:\n  api:\n    build: ./api\n",
            "infra/db.yaml": "services:\n  migrate:\n    build: ./migrate\n",
            "api/Dockerfile": DOCKERFILE,
            "infra/migrate/Dockerfile": DOCKERFILE,
        },
    )
    assert found == {
        "api/Dockerfile": [("api", "compose.yaml")],
        "infra/migrate/Dockerfile": [("infra/migrate", "infra/db.yaml")],
    }
    # The builds depend on the included file and on the .env files compose would read (present or not).
    assert {"compose.yaml", "infra/db.yaml", ".env", "infra/.env"} <= Project(DirTree(tmp_path)).compose_inputs


def test_a_missing_include_is_reported_at_its_line(tmp_path):
    write(tmp_path, {"compose.yaml": "include:\n  - nowhere.yaml\nservices:\n  api:\n    image: nginx\n"})
    (finding,) = [f for f in analyze(tmp_path) if f.rule == "CO010"]
    assert (finding.file, finding.line) == ("compose.yaml", 2)
    assert "nowhere.yaml" in finding.message


def test_extends_inherits_the_build_of_a_service_in_another_file(tmp_path):
    project = Project(
        DirTree(
            write(
                tmp_path,
                {
                    "compose.yaml": (
                        "services:\n  web:\n    extends:\n      file: common/services.yml\n      service: python\n"
                        "    build:\n      target: web\n"
                    ),
                    "common/services.yml": "services:\n  python:\n    build:\n      context: ../web\n      args: {PY: '3.12'}\n",
                    "web/Dockerfile": DOCKERFILE,
                },
            )
        )
    )
    (ctx,) = project.contexts
    (build,) = ctx.builds
    # The extended service's context stays relative to its own file; the local target merges onto it.
    assert (ctx.dir, ctx.dockerfile, ctx.services) == ("web", "web/Dockerfile", ["web"])
    assert (build.target, build.args, build.file) == ("web", {"PY": "3.12"}, "compose.yaml")


def test_extends_within_one_file_follows_the_chain(tmp_path):
    project = Project(
        DirTree(
            write(
                tmp_path,
                {
                    "compose.yaml": (
                        "services:\n  base:\n    build: ./svc\n  worker:\n    extends: base\n"
                        "  beat:\n    extends: {service: worker}\n    profiles: [cron]\n"
                    ),
                    "svc/Dockerfile": DOCKERFILE,
                },
            )
        )
    )
    (ctx,) = project.contexts
    assert ctx.services == ["base", "worker", "beat"]
    assert ctx.profiles == {"beat": ("cron",)}


def test_extends_of_a_service_nobody_defines_is_reported(tmp_path):
    write(
        tmp_path,
        {
            "compose.yaml": "services:\n  web:\n    extends: {file: base.yml, service: nope}\n",
            "base.yml": "services:\n  other:\n    image: nginx\n",
        },
    )
    assert [(f.line, "nope" in f.message) for f in analyze(tmp_path) if f.rule == "CO010"] == [(3, True)]


def test_interpolation_takes_the_env_file_and_the_defaults(tmp_path):
    found = contexts(
        tmp_path,
        {
            "compose.yaml": (
                "services:\n"
                "  api:\n    build: {context: ., dockerfile: '${API_DOCKERFILE}'}\n"
                "  web:\n    build: '${WEB_DIR:-./web}'\n"
                "  docs:\n    build: {context: '${DOCS_DIR-./docs}'}\n"
            ),
            ".env": "# variables\nAPI_DOCKERFILE=./src/api/Dockerfile\nexport DOCS_DIR=\n",
            "src/api/Dockerfile": DOCKERFILE,
            "web/Dockerfile": DOCKERFILE,
            "Dockerfile": DOCKERFILE,
        },
    )
    # DOCS_DIR is set (empty): `-` keeps the empty value, so the project directory is the context.
    assert found == {
        "Dockerfile": [(".", "compose.yaml")],
        "src/api/Dockerfile": [(".", "compose.yaml")],
        "web/Dockerfile": [("web", "compose.yaml")],
    }


def test_build_args_keep_what_is_written_and_know_what_compose_passes(tmp_path):
    project = Project(
        DirTree(
            write(
                tmp_path,
                {
                    "compose.yaml": "services:\n  api:\n    build:\n      context: api\n"
                    '      args: ["TOKEN=${NPM_TOKEN}", "MODE=${MODE:-prod}", NPM_TOKEN]\n',
                    ".env": "NPM_TOKEN=s3cr3t-value\n",
                    "api/Dockerfile": DOCKERFILE,
                },
            )
        )
    )
    (build,) = project.composes[0].builds
    # A generated file copies ``args``: the .env value must not travel with it.
    assert build.args == {"TOKEN": "${NPM_TOKEN}", "MODE": "${MODE:-prod}", "NPM_TOKEN": ""}
    assert build.arg_values == {"TOKEN": "s3cr3t-value", "MODE": "prod", "NPM_TOKEN": "s3cr3t-value"}


def test_an_unresolvable_variable_is_reported_not_guessed(tmp_path):
    write(
        tmp_path,
        {
            "compose.yaml": (
                "services:\n  api:\n    build:\n      context: '${API_DIR}'\n"
                "  web:\n    build: {context: web, dockerfile: '${WEB_DF:?set WEB_DF in .env}'}\n"
            ),
            "api/Dockerfile": DOCKERFILE,
            "web/Dockerfile": DOCKERFILE,
        },
    )
    project = Project(DirTree(tmp_path))
    assert all(c.inferred for c in project.contexts)  # no context made up from an empty string
    found = {f.line: f.message for f in analyze(tmp_path) if f.rule == "CO010"}
    assert sorted(found) == [3, 6]
    assert "API_DIR has no default and no .env sets it" in found[3]
    assert "required variable WEB_DF is missing a value: set WEB_DF in .env" in found[6]


def test_a_dockerfile_built_under_two_compose_files_has_both_contexts(tmp_path):
    project = Project(
        DirTree(
            write(
                tmp_path,
                {
                    "compose.yaml": "services:\n  api:\n    build: {context: ., dockerfile: services/api/Dockerfile}\n",
                    "services/api/compose.prod.yaml": "services:\n  api:\n    build: .\n",
                    "services/api/Dockerfile": DOCKERFILE,
                },
            )
        )
    )
    assert [(c.dir, c.compose_files) for c in project.contexts_of("services/api/Dockerfile")] == [
        (".", ["compose.yaml"]),
        ("services/api", ["services/api/compose.prod.yaml"]),
    ]


def test_a_variant_beside_the_default_file_is_merged_onto_it(tmp_path):
    # `docker compose -f compose.yaml -f compose.prod.yaml`: the variant's partial build keeps the base's context.
    project = Project(
        DirTree(
            write(
                tmp_path,
                {
                    "compose.yaml": "services:\n  api:\n    build: {context: api, dockerfile: ../docker/api.Dockerfile}\n",
                    "compose.prod.yaml": "services:\n  api:\n    build: {target: prod}\n",
                    "docker/api.Dockerfile": DOCKERFILE,
                },
            )
        )
    )
    assert [(c.dir, c.dockerfile, c.compose_files) for c in project.contexts] == [
        ("api", "docker/api.Dockerfile", ["compose.prod.yaml", "compose.yaml"])
    ]
    prod = next(c for c in project.composes if c.path == "compose.prod.yaml")
    assert [(b.context, b.dockerfile, b.target) for b in prod.builds] == [("api", "docker/api.Dockerfile", "prod")]


def test_interpolation_syntax():
    env = {"SET": "x", "EMPTY": ""}
    cases = {
        "$SET/${SET}": "x/x",
        "${EMPTY:-d}": "d",
        "${EMPTY-d}": "",
        "${UNSET-d}": "d",
        "$$SET": "$SET",
        "${SET:+alt}": "alt",
        "${EMPTY:+alt}": "",
        "${UNSET:-${SET:-n}}": "x",
        "cost: $5": "cost: $5",
    }
    assert {text: interpolate(text, env).text for text in cases} == cases
    assert interpolate("${UNSET}", env).missing == ["UNSET"]
    assert interpolate("${EMPTY:?needed}", env).errors == ["required variable EMPTY is missing a value: needed"]
    assert interpolate("${EMPTY?needed}", env).ok


def test_env_file_syntax():
    text = (
        "A=1\nexport B = two words # comment\nC='${A} literal'\nD=\"${A}\\nx\"\nE=${A}-${MISSING:-z}\n#F=1\nbad line\n"
    )
    assert parse_env(text) == {"A": "1", "B": "two words", "C": "${A} literal", "D": "1\nx", "E": "1-z"}


_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(
        [".", "./api", "${X}", "${X:-.}", "${X:?no}", "$$", "a=b", "base.yml", "api", "!", "${", "../..", "x://y"]
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "context",
                    "dockerfile",
                    "args",
                    "target",
                    "file",
                    "service",
                    "path",
                    "profiles",
                    "additional_contexts",
                    "env_file",
                    "project_directory",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=8,
)
_SERVICE = st.dictionaries(st.sampled_from(["build", "extends", "profiles", "image"]), _VALUES, max_size=3)


@given(
    st.dictionaries(st.sampled_from(["api", "web", "1"]), _SERVICE | _VALUES, max_size=3),
    _VALUES,
    st.dictionaries(st.sampled_from(["api", "base"]), _SERVICE, max_size=2),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_odd_shapes_never_stop_the_resolution(tmp_path, services, include, base):
    root = tmp_path / "odd"
    shutil.rmtree(root, ignore_errors=True)
    write(
        root,
        {
            "compose.yaml": yaml.safe_dump({"services": services, "include": include}),
            "base.yml": yaml.safe_dump({"services": base}),
            "compose.override.yaml": "services: {api: {}}\n",
            "api/Dockerfile": DOCKERFILE,
        },
    )
    project = Project(DirTree(root))
    assert not [n for n in project.notes if "could not be resolved" in n[1]]
    assert all(
        isinstance(u.message, str) and u.file in ("compose.yaml", "base.yml", "compose.override.yaml")
        for u in project.compose_unresolved
    )


def test_compose_file_in_the_env_file_declares_a_stack(tmp_path):
    project = Project(
        DirTree(
            write(
                tmp_path,
                {
                    "deploy/base.yaml": "services:\n  api:\n    build: ../api\n",
                    "deploy/docker-compose.ci.yml": "services:\n  api:\n    build: {target: ci}\n",
                    "deploy/.env": "COMPOSE_FILE=base.yaml:docker-compose.ci.yml:missing.yaml\n",
                    "api/Dockerfile": DOCKERFILE,
                },
            )
        )
    )
    # Alone, the ci file builds from its own directory; the declared stack names a file that isn't there.
    assert [(c.path, [(b.context, b.target) for b in c.builds]) for c in project.composes] == [
        ("deploy/docker-compose.ci.yml", [("deploy", "ci")])
    ]
    (problem,) = project.compose_unresolved
    assert (problem.file, problem.line) == ("deploy/.env", 1) and "missing.yaml" in problem.message
    (tmp_path / "deploy/.env").write_text("COMPOSE_FILE=base.yaml:docker-compose.ci.yml\n")
    project = Project(DirTree(tmp_path))  # merged onto base.yaml, api builds from api/ with the ci target
    assert [(c.path, [(b.context, b.target) for b in c.builds]) for c in project.composes] == [
        ("deploy/docker-compose.ci.yml", [("deploy", "ci"), ("api", "ci")])
    ]


def test_a_variant_that_names_its_own_build_counts_alone_too(tmp_path):
    project = Project(
        DirTree(
            write(
                tmp_path,
                {
                    "compose.yaml": "services:\n  api:\n    build: {context: api, dockerfile: Dockerfile.dev}\n"
                    "  web:\n    build: {context: ., dockerfile: web/Dockerfile}\n",
                    "docker-compose.prod.yml": "services:\n  api:\n    build: ./api\n  web:\n    build: .\n",
                    "api/Dockerfile": DOCKERFILE,
                    "api/Dockerfile.dev": DOCKERFILE,
                    "web/Dockerfile": DOCKERFILE,
                },
            )
        )
    )
    prod = next(c for c in project.composes if c.path == "docker-compose.prod.yml")
    # Merged onto compose.yaml, api keeps Dockerfile.dev; alone, it builds api/Dockerfile. web alone
    # would build ./Dockerfile, which doesn't exist: only the merged build counts.
    assert [(b.service, b.context, b.dockerfile) for b in prod.builds] == [
        ("api", "api", "api/Dockerfile.dev"),
        ("web", ".", "web/Dockerfile"),
        ("api", "api", "api/Dockerfile"),
    ]
