"""SE001..SE005, SE010, SE011 (root, secrets, remote ADD, docker.sock, host access) and the non-root fix."""

from __future__ import annotations

import pytest

from agent_pipelines.engine.domain import FixError
from agent_pipelines.pipelines.docker_optimization.analysis import analyze
from agent_pipelines.pipelines.docker_optimization.domain import DockerDomain
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
from tests.rulekit import BILLING, codes, fixed, write


# -- SE001 ---------------------------------------------------------------------
def test_se001_triggers_on_the_final_from_without_a_user(tmp_path):
    text = 'FROM python:3.12 AS build\nUSER app\nFROM python:3.12-slim\nCMD ["x"]\n'
    assert codes(tmp_path, {"Dockerfile": text}, "SE001") == [("Dockerfile", 3)]


def test_se001_triggers_on_user_root_and_user_0(tmp_path):
    files = {"a/Dockerfile": "FROM debian:12\nUSER app\nUSER root\n", "b/Dockerfile": "FROM debian:12\nUSER 0:0\n"}
    assert codes(tmp_path, files, "SE001") == [("a/Dockerfile", 3), ("b/Dockerfile", 2)]


def test_se001_says_which_user_was_created_but_never_switched_to(tmp_path):
    write(tmp_path, {"Dockerfile": 'FROM debian:12\nRUN useradd --uid 1000 svc\nCMD ["x"]\n'})
    [finding] = [f for f in analyze(tmp_path) if f.rule == "SE001"]
    assert finding.line == 1
    assert "user svc is created (line 2) but never switched to" in finding.message


def test_se001_is_quiet_for_a_user_inherited_from_a_stage_or_a_nonroot_base(tmp_path):
    files = {
        "a/Dockerfile": 'FROM debian:12 AS base\nUSER 10001\nFROM base\nCMD ["x"]\n',
        "b/Dockerfile": 'FROM gcr.io/distroless/python3-debian12:nonroot\nCMD ["x"]\n',
        "c/Dockerfile": "FROM debian:12\nUSER $APP_USER\n",
        "d/Dockerfile": "FROM docker.io/grafana/k6:2.2.0-with-browser\nCOPY load.js .\n",
        "e/Dockerfile": "FROM otel/opentelemetry-collector-contrib:0.120.0\nCOPY config.yaml /etc/\n",
    }
    assert codes(tmp_path, files, "SE001") == []


def test_unsafe_fix_adds_a_user_keeps_the_code_root_owned_and_switches_before_cmd(tmp_path):
    assert fixed(tmp_path, {"Dockerfile": BILLING}, "SE001") == {
        "Dockerfile": (
            "FROM python:3.11-slim\n"
            "RUN useradd --system --uid 10001 --user-group --no-create-home app\n"
            "WORKDIR /app\n"
            "COPY . .\n"
            "RUN pip install --upgrade pip\n"
            "RUN pip install -r requirements.txt\n"
            "EXPOSE 8100\n"
            "HEALTHCHECK CMD curl -f http://localhost:8100/health || exit 1\n"
            "USER app\n"
            'CMD ["python", "-m", "billing.server"]\n'
        )
    }


def test_unsafe_fix_result_parses_and_no_copy_gives_the_code_to_the_user(tmp_path):
    text = (
        "FROM python:3.12 AS build\n"
        "COPY . /src\n"
        "FROM python:3.12-slim\n"
        "WORKDIR /srv\n"
        "COPY --from=build /opt/venv /opt/venv\n"
        "COPY libs/common /srv/libs/common\n"
        "COPY services/api api\n"
        'ENTRYPOINT ["python", "-m", "api"]\n'
    )
    out = fixed(tmp_path, {"Dockerfile": text}, "SE001")["Dockerfile"]
    df = Dockerfile.parse("Dockerfile", out)
    assert not df.error
    assert [i.flag("chown") for i in df.of("COPY")] == [[], [], [], []]  # the user can run the code, not rewrite it
    assert df.user_at(df.of("ENTRYPOINT")[0]) == "app"


def test_unsafe_fix_on_alpine_uses_busybox_adduser_and_keeps_crlf_and_no_final_newline(tmp_path):
    text = "FROM node:20-alpine\r\nWORKDIR /app\r\nCOPY . .\r\nRUN npm ci"
    assert fixed(tmp_path, {"Dockerfile": text}, "SE001") == {
        "Dockerfile": (
            "FROM node:20-alpine\r\n"
            "RUN addgroup -S -g 10001 app && adduser -S -D -H -u 10001 -G app app\r\n"
            "WORKDIR /app\r\n"
            "COPY . .\r\n"
            "RUN npm ci\r\n"
            "USER app"
        )
    }


def test_unsafe_fix_reuses_a_created_user_and_switches_after_the_last_run(tmp_path):
    text = (
        "FROM debian:12\n"
        "COPY setup.sh /setup.sh\n"
        "RUN useradd --uid 1000 svc\n"
        "WORKDIR /home/svc\n"
        "COPY app.py .\n"
        'CMD ["python3", "app.py"]\n'
        "RUN chmod +x /setup.sh\n"
    )
    assert fixed(tmp_path, {"Dockerfile": text}, "SE001") == {"Dockerfile": text + "USER svc\n"}


def test_unsafe_fix_on_scratch_uses_a_numeric_user(tmp_path):
    text = "FROM golang:1.22 AS build\nRUN go build -o /app .\nFROM scratch\nCOPY --from=build /app /app\n"
    assert fixed(tmp_path, {"Dockerfile": text}, "SE001") == {"Dockerfile": text + "USER 10001:10001\n"}


# What broke real images: packages under /root (pip --user), then USER switched: ModuleNotFoundError.
PIP_USER = (
    "FROM python:3.12-slim\n"
    "WORKDIR /app\n"
    "COPY requirements.txt .\n"
    "RUN pip install --user -r requirements.txt\n"
    "COPY . .\n"
    'CMD ["python", "-m", "uvicorn", "main:app"]\n'
)


def test_unsafe_fix_lets_the_user_read_packages_root_installed_with_pip_user(tmp_path):
    assert fixed(tmp_path, {"Dockerfile": PIP_USER}, "SE001") == {
        "Dockerfile": (
            "FROM python:3.12-slim\n"
            "RUN useradd --system --uid 10001 --user-group --no-create-home app\n"
            "WORKDIR /app\n"
            "COPY requirements.txt .\n"
            "RUN pip install --user -r requirements.txt\n"
            "COPY . .\n"
            "# the runtime user reads what the app needs under /root; its files stay root's\n"
            "RUN chmod o+x /root\n"
            "ENV PYTHONUSERBASE=/root/.local\n"
            "USER app\n"
            'CMD ["python", "-m", "uvicorn", "main:app"]\n'
        )
    }


def test_unsafe_fix_finds_root_local_copied_from_a_build_stage_and_a_path_under_root(tmp_path):
    text = (
        "FROM python:3.12 AS build\n"
        "RUN pip install --user uvicorn\n"
        "FROM python:3.12-slim\n"
        "COPY --from=build /root/.local /root/.local\n"
        "ENV PATH=/root/.local/bin:$PATH\n"
        "COPY app.py /app/\n"
        'CMD ["uvicorn", "app:app"]\n'
    )
    out = fixed(tmp_path, {"Dockerfile": text}, "SE001")["Dockerfile"]
    assert out.endswith(
        "COPY app.py /app/\n"
        "# the runtime user reads what the app needs under /root; its files stay root's\n"
        "RUN chmod o+x /root\nENV PYTHONUSERBASE=/root/.local\nUSER app\n"
        'CMD ["uvicorn", "app:app"]\n'
    )


def test_unsafe_fix_keeps_a_pythonuserbase_the_dockerfile_sets_and_opens_root_for_a_venv_there(tmp_path):
    text = (
        "FROM python:3.12-slim\n"
        "ENV PYTHONUSERBASE=/opt/py\n"
        "RUN pip install --user flask && python -m venv /root/venv\n"
        'CMD ["/root/venv/bin/python", "-m", "flask"]\n'
    )
    out = fixed(tmp_path, {"Dockerfile": text}, "SE001")["Dockerfile"]
    assert "ENV PYTHONUSERBASE" not in out.split("RUN pip")[1]  # /opt/py is readable as it is
    assert "RUN chmod o+x /root\nUSER app\n" in out  # for the venv under /root


def test_unsafe_fix_gives_the_user_only_the_volumes_and_the_configured_directories(tmp_path):
    text = 'FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nVOLUME /app/data\nCMD ["python", "-m", "app"]\n'
    config = "policy:\n  dockerfiles:\n    Dockerfile: {writable: [/app/cache]}\n"
    assert fixed(tmp_path, {"Dockerfile": text, ".pipeline.yaml": config}, "SE001") == {
        "Dockerfile": (
            "FROM python:3.12-slim\n"
            "RUN useradd --system --uid 10001 --user-group --no-create-home app\n"
            "WORKDIR /app\n"
            "COPY . .\n"
            "RUN mkdir -p /app/data /app/cache && chown app:app /app/data /app/cache\n"  # before VOLUME: kept
            "VOLUME /app/data\n"
            "USER app\n"
            'CMD ["python", "-m", "app"]\n'
        )
    }


@pytest.mark.parametrize(
    "creates, user",
    [
        ("addgroup -S appgroup && adduser -S appuser -G appgroup", "appuser"),  # busybox: options after the name
        ("adduser --disabled-password --gecos '' appuser && adduser appuser appgroup", "appuser"),  # 2nd: join a group
        ("groupadd -r appgroup && useradd -r -g appgroup -u 1001 appuser", "appuser"),
        ("useradd -u1001 -gappgroup appuser", "appuser"),
    ],
)
def test_unsafe_fix_switches_to_the_created_user_never_to_a_group(tmp_path, creates, user):
    text = f'FROM python:3.12-slim\nRUN {creates}\nCMD ["python"]\n'
    assert fixed(tmp_path, {"Dockerfile": text}, "SE001")["Dockerfile"].endswith(f'USER {user}\nCMD ["python"]\n')


def test_a_group_alone_is_no_user_to_switch_to(tmp_path):
    text = 'FROM python:3.12-slim\nRUN groupadd appgroup && adduser --group appgroup\nCMD ["python"]\n'
    out = fixed(tmp_path, {"Dockerfile": text}, "SE001")["Dockerfile"]
    assert "RUN useradd --system --uid 10001" in out and out.endswith('USER app\nCMD ["python"]\n')


def test_the_non_root_task_is_unsafe_and_says_what_it_will_do_and_why(tmp_path):
    write(tmp_path, {"Dockerfile": PIP_USER})
    domain = DockerDomain()
    [task] = domain.plan(
        [f for f in domain.analyze(tmp_path) if f.rule == "SE001"], ["dockerfiles"], True, tmp_path
    ).tasks
    assert task.applicability.value == "unsafe"
    assert task.rationale.endswith(
        "The fix adds user app; keeps the code root-owned (read-only to the user); lets the user reach /root "
        "(chmod o+x; nothing else there changes) because pip install --user (line 4) installs into /root/.local; "
        "sets PYTHONUSERBASE=/root/.local so the user's Python finds those packages; gives the user no writable "
        "directory (no VOLUME, none in policy.dockerfiles in .pipeline.yaml): an app that writes files will fail "
        "and must be configured."
    )


def test_unsafe_fix_refuses_an_unknown_base(tmp_path):
    with pytest.raises(FixError, match="can't tell how to add a user"):
        fixed(tmp_path, {"Dockerfile": 'FROM ghcr.io/acme/base:1\nCMD ["x"]\n'}, "SE001")


# -- SE002 ---------------------------------------------------------------------
SECRET_DOCKERFILE = (
    "FROM python:3.12-slim\n"
    "ARG PIP_TOKEN=ghp_abcdef123\n"
    "ARG NPM_TOKEN\n"
    'ENV DB_PASSWORD="hunter2" LOG_LEVEL=info\n'
    "ENV API_KEY=${API_KEY}\n"
    "ENV GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D\n"
    "ENV POSTGRES_PASSWORD_FILE=/run/secrets/db\n"
)
SECRET_COMPOSE = (
    "services:\n"
    "  api:\n"
    "    build:\n"
    "      context: .\n"
    "      args:\n"
    "        - STRIPE_SECRET=sk_live_123\n"
    "        - HOME_DIR=/app\n"
    "    environment:\n"
    "      DB_PASSWORD: ${DB_PASSWORD:-hunter2}\n"
    "      API_TOKEN: ${API_TOKEN}\n"
    "      SESSION_KEY: 'changeme'\n"
    "      REDIS_URL: redis://redis:6379/0\n"
)


def test_se002_triggers_on_literal_secrets_in_arg_env_and_compose(tmp_path):
    files = {"Dockerfile": SECRET_DOCKERFILE, "compose.yaml": SECRET_COMPOSE}
    assert codes(tmp_path, files, "SE002") == [
        ("Dockerfile", 2),
        ("Dockerfile", 4),
        ("compose.yaml", 6),
        ("compose.yaml", 9),
        ("compose.yaml", 11),
    ]


def test_se002_never_shows_the_secret_value(tmp_path):
    write(tmp_path, {"Dockerfile": SECRET_DOCKERFILE, "compose.yaml": SECRET_COMPOSE})
    found = [f for f in analyze(tmp_path) if f.rule == "SE002"]
    assert [f.evidence for f in found] == [
        "ARG PIP_TOKEN=***",
        "ENV DB_PASSWORD=***",
        "api: STRIPE_SECRET=***",
        "api: DB_PASSWORD=***",
        "api: SESSION_KEY=***",
    ]
    for secret in ("ghp_abcdef123", "hunter2", "sk_live_123", "changeme"):
        assert not any(secret in f.evidence or secret in f.message for f in found)


def test_se002_is_quiet_on_references_and_non_secret_names(tmp_path):
    text = "FROM python:3.12-slim\nARG GITHUB_TOKEN\nENV API_KEY=$API_KEY PATH=/venv/bin:$PATH\n"
    compose = "services:\n  api:\n    image: x\n    environment: [API_TOKEN, DB_PASSWORD=${DB_PASSWORD:?set it}]\n"
    assert codes(tmp_path, {"Dockerfile": text, "compose.yaml": compose}, "SE002") == []


# -- SE003 ---------------------------------------------------------------------
def test_se003_triggers_on_add_of_a_url_without_checksum_only(tmp_path):
    text = (
        "FROM debian:12\n"
        "ADD https://example.com/tool.tar.gz /tmp/\n"
        "ADD --checksum=sha256:" + "c" * 64 + " https://example.com/tool.tar.gz /tmp/\n"
        "ADD vendor.tar.gz /opt/\n"
        "ADD git@github.com:acme/lib.git /src/lib\n"
    )
    assert codes(tmp_path, {"Dockerfile": text}, "SE003") == [("Dockerfile", 2), ("Dockerfile", 5)]


# -- SE004 ---------------------------------------------------------------------
def test_se004_triggers_on_compose_volumes_and_run_mounts_of_the_docker_socket(tmp_path):
    compose = (
        "services:\n"
        "  ci:\n"
        "    image: x\n"
        "    volumes:\n"
        "      - ./data:/data\n"
        "      - /var/run/docker.sock:/var/run/docker.sock:ro\n"
        "  proxy:\n"
        "    image: y\n"
        "    volumes:\n"
        "      - type: bind\n"
        "        source: /run/docker.sock\n"
        "        target: /var/run/docker.sock\n"
    )
    text = (
        "FROM docker:27-cli\n"
        "RUN --mount=type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock docker ps\n"
        "RUN --mount=type=cache,target=/root/.cache true\n"
    )
    assert codes(tmp_path, {"compose.yaml": compose, "Dockerfile": text}, "SE004") == [
        ("Dockerfile", 2),
        ("compose.yaml", 6),
        ("compose.yaml", 10),
    ]


# -- SE005, SE010, SE011 ---------------------------------------------------------
HOST_ACCESS = (
    "services:\n"
    "  agent:\n"
    "    image: x\n"
    "    privileged: true\n"
    "    cap_add: [ALL]\n"
    "    network_mode: host\n"
    "  app:\n"
    "    image: y\n"
    "    privileged: false\n"
    "    cap_add: [NET_BIND_SERVICE]\n"
    "    network_mode: bridge\n"
)


@pytest.mark.parametrize("rule, line", [("SE005", 4), ("SE010", 5), ("SE011", 6)])
def test_host_access_rules_trigger_on_their_key_only(tmp_path, rule, line):
    assert codes(tmp_path, {"compose.yaml": HOST_ACCESS}, rule) == [("compose.yaml", line)]


# -- SE006 -----------------------------------------------------------------------
def test_se006_triggers_on_filled_in_env_files_and_private_keys_in_a_context(tmp_path):
    files = {
        "api/Dockerfile": "FROM python:3.12-slim\nCOPY app.py .\n",
        "api/app.py": "",
        "api/.env": "KEY=1\n",
        "api/.env.local": "KEY=2\n",
        "api/.env.production": "KEY=3\n",
        "api/tls/privkey.pem": "-----BEGIN PRIVATE KEY-----\n",
    }
    assert codes(tmp_path, files, "SE006") == [
        ("api/.env", 0),
        ("api/.env.local", 0),
        ("api/.env.production", 0),
        ("api/tls/privkey.pem", 0),
    ]


def test_se006_is_quiet_on_templates_examples_and_certificates(tmp_path):
    files = {
        "api/Dockerfile": "FROM python:3.12-slim\nCOPY app.py .\n",
        "api/app.py": "",
        "api/.env.example": "KEY=\n",
        "api/.env.template": "KEY=\n",
        "api/.env.sample": "KEY=\n",
        "api/.env.dist": "KEY=\n",
        "api/.env.local.example": "KEY=\n",
        "api/.env.production.tmpl": "KEY=\n",
        "api/tls/cert.pem": "-----BEGIN CERTIFICATE-----\n",
        "api/tls/fullchain.pem": "x\n",
        "api/tls/ca.pem": "x\n",
    }
    assert codes(tmp_path, files, "SE006") == []


def test_se006_is_quiet_on_a_env_file_with_only_public_build_variables(tmp_path):
    files = {
        "app/Dockerfile": "FROM node:22-slim\nCOPY . .\nRUN npx expo export\n",
        "app/.env": ("# https://docs.expo.dev/guides/environment-variables/\n\nEXPO_PUBLIC_FRONTEND_PROXY_PORT=8080\n"),
        "web/Dockerfile": "FROM node:22-slim\nCOPY . .\n",
        "web/.env": "VITE_API_URL=/api\nSTRIPE_SECRET_KEY=sk_live_1\n",
    }
    assert codes(tmp_path, files, "SE006") == [("web/.env", 0)]


def test_se006_is_quiet_on_a_file_the_context_s_dockerignore_excludes(tmp_path):
    files = {
        "api/Dockerfile": "FROM python:3.12-slim\nCOPY app.py .\n",
        "api/app.py": "",
        "api/.env": "KEY=1\n",
        "api/.dockerignore": "**/.env\n",
        "worker/Dockerfile": "FROM python:3.12-slim\nCOPY app.py .\n",
        "worker/app.py": "",
        "worker/.env": "KEY=1\n",
    }
    write(tmp_path, files)
    assert [(f.file, f.message) for f in analyze(tmp_path) if f.rule == "SE006"] == [
        (
            "worker/.env",
            "worker/.env is in build context worker and not excluded by a .dockerignore: "
            "sent to the builder, not copied",
        )
    ]


def test_se006_is_cleared_by_the_dockerignore_the_context_fix_writes(tmp_path):
    # SE006 has no fix of its own: the context's .dockerignore (CX001's fix) is the way out.
    files = {"api/Dockerfile": "FROM python:3.12-slim\nCOPY . .\n", "api/app.py": "", "api/.env": "KEY=1\n"}
    assert codes(tmp_path, files, "SE006") == [("api/.env", 0)]
    assert fixed(tmp_path, {}, "CX001") == {
        "api/.dockerignore": (
            "# Written by the docker-optimization pipeline; every COPY still finds its sources.\n**/.env\n"
        )
    }
    assert codes(tmp_path, {}, "SE006") == []


def test_se006_reports_a_file_once_naming_every_context_that_sends_it(tmp_path):
    compose = (
        "services:\n  app:\n    build: ./app\n  app-root:\n    build: {context: ., dockerfile: app/Dockerfile.root}\n"
    )
    files = {
        "compose.yaml": compose,
        "app/Dockerfile": "FROM node:22-slim\nCOPY . .\n",
        "app/Dockerfile.root": "FROM node:22-slim\nCOPY app/index.js .\n",
        "app/index.js": "",
        "app/.env": "TOKEN=1\n",
    }
    write(tmp_path, files)
    found = [f for f in analyze(tmp_path) if f.rule == "SE006"]
    assert [(f.file, f.message) for f in found] == [
        (
            "app/.env",
            "app/.env is in build contexts app, . and not excluded by a .dockerignore: "
            "COPY puts it in the image (app/Dockerfile)",
        )
    ]
