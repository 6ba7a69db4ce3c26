"""A deterministic synthetic monorepo for benchmarking ``pipeline analyze``.

At scale 1 it holds ~45 Dockerfiles (Python, Node and Go services, single-
and multi-stage, with the problems real repositories have: pip installs
without cache mounts, ``COPY . .`` before the install, apt without
``--no-install-recommends``, curl health checks, unpinned tags, ...), ~10
stack compose files that build them under varied contexts (the repository
root with a ``dockerfile:`` path, the stack directory, the service
directory, a service directory with its Dockerfile outside it:
``dockerfile: ../docker/api.Dockerfile``), a few ``.dockerignore`` files,
and 20,000 files in all: sources, tests, docs, fixtures, vendored
``node_modules``/``vendor``/``.venv`` trees, mostly small with a few larger
ones. Scale N multiplies every count.

The compose files have the shapes real monorepos have (``Manifest.shapes``
lists each):

- ``prod``: a ``compose.prod.yaml`` in a service's directory builds the same
  Dockerfile as the stack's compose file under another context (its own
  directory for a root-context service, the root for the others), where
  most of its COPY sources don't exist: contexts already broken;
- ``override``: ``docker-compose.override.yml``/``compose.override.yaml``
  beside a stack's file, moving one service to another context and adding
  args to another;
- ``include``: the root compose file includes ``infra/compose.yaml``, whose
  service (behind the ``ops`` profile) builds a tool from ``../tools/...``;
- ``extends``: a root service inherits its whole build from
  ``common/services.yml``;
- ``env``: root services whose context is ``${VAR}`` from the root ``.env``
  or ``${VAR:-default}``.

The same (scale, seed) always gives byte-identical trees: every choice comes
from one ``random.Random(seed)``, and file contents are drawn from pools built
from that generator. Files are written with ``os.open``/``os.write`` and each
directory is created once, so scale 10 (~200,000 files) takes seconds.

    python -m bench.monorepo --scale 1 --out /tmp/mono
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

VERSION = 3  # bump when the generated tree changes, so --out trees are regenerated

BASE_FILES = 20_000
BASE_DOCKERFILES = 45
BASE_COMPOSES = 10  # one per stack; the shapes below add to them
BASE_PROD = 3  # service directories with a compose.prod.yaml
BASE_OVERRIDES = 2  # stacks with an override file

STACKS = (
    "shop",
    "billing",
    "identity",
    "search",
    "analytics",
    "media",
    "notify",
    "ledger",
    "catalog",
    "support",
    "payments",
    "inventory",
    "shipping",
    "reviews",
    "pricing",
    "loyalty",
    "reports",
    "auth",
    "chat",
    "feeds",
)
SERVICES = (
    "api",
    "worker",
    "web",
    "scheduler",
    "gateway",
    "admin",
    "ingest",
    "exporter",
    "indexer",
    "mailer",
    "frontend",
    "sync",
    "cron",
    "webhooks",
    "proxy",
    "consumer",
)
TOOLS = ("migrate", "seed", "lint", "docs-site", "loadtest", "backup", "e2e", "codegen")
WORDS = (
    "alpha",
    "bravo",
    "cobalt",
    "delta",
    "ember",
    "falcon",
    "garnet",
    "harbor",
    "iris",
    "jade",
    "kepler",
    "lumen",
    "maple",
    "nova",
    "onyx",
    "pixel",
    "quartz",
    "raven",
    "sierra",
    "tango",
    "umber",
    "vortex",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
    "axis",
    "bloom",
    "cedar",
    "dune",
    "echo",
    "flint",
)
NPM = (
    "express",
    "lodash",
    "react",
    "react-dom",
    "axios",
    "chalk",
    "debug",
    "ms",
    "qs",
    "body-parser",
    "cookie",
    "uuid",
    "yargs",
    "semver",
    "glob",
    "minimatch",
    "commander",
    "dotenv",
    "ws",
    "mime",
    "tslib",
    "rxjs",
    "zod",
    "pino",
    "fastify",
    "undici",
    "esbuild",
    "vite",
    "typescript",
    "eslint",
    "prettier",
    "jest",
)
PYPI = (
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "charset_normalizer",
    "fastapi",
    "starlette",
    "pydantic",
    "anyio",
    "sniffio",
    "uvicorn",
    "click",
    "h11",
    "jinja2",
    "markupsafe",
    "redis",
    "sqlalchemy",
    "greenlet",
    "psycopg",
    "celery",
    "kombu",
    "billiard",
    "vine",
    "attrs",
    "yaml",
    "six",
    "dateutil",
    "pytz",
)
GOMODS = (
    "github.com/gorilla/mux",
    "github.com/spf13/cobra",
    "github.com/spf13/pflag",
    "github.com/sirupsen/logrus",
    "github.com/stretchr/testify",
    "golang.org/x/sys",
    "golang.org/x/net",
    "google.golang.org/grpc",
    "google.golang.org/protobuf",
    "github.com/prometheus/client_golang",
    "go.uber.org/zap",
)


@dataclass
class Manifest:
    """What a generated tree holds (repo-relative POSIX paths)."""

    root: str
    scale: float
    seed: int
    files: int = 0
    bytes: int = 0
    dockerfiles: list[str] = field(default_factory=list)
    composes: list[str] = field(default_factory=list)
    dockerignores: list[str] = field(default_factory=list)
    services: int = 0  # compose services with a build: section
    shapes: dict[str, list[str]] = field(default_factory=dict)  # compose shape -> the files that have it
    seconds: float = 0.0  # generation wall time (0 when an existing tree was reused)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


class _Writer:
    """Writes files with minimal overhead: each directory made once, raw os.open/os.write."""

    FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.dirs: set[str] = {""}
        self.paths: set[str] = set()
        self.bytes = 0

    def write(self, path: str, data: bytes | str) -> None:
        if path in self.paths:
            raise ValueError(f"generator bug: {path} written twice")
        if isinstance(data, str):
            data = data.encode()
        parent = posixpath.dirname(path)
        if parent not in self.dirs:
            os.makedirs(os.path.join(self.root, parent), exist_ok=True)
            while parent and parent not in self.dirs:
                self.dirs.add(parent)
                parent = posixpath.dirname(parent)
        fd = os.open(os.path.join(self.root, path), self.FLAGS, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        self.paths.add(path)
        self.bytes += len(data)


def counts(scale: float) -> tuple[int, int, int]:
    """(files, Dockerfiles, compose files) a scale asks for."""
    files, dockerfiles = max(200, round(BASE_FILES * scale)), max(3, round(BASE_DOCKERFILES * scale))
    stacks, prod, overrides, include = _compose_counts(scale, dockerfiles)
    return files, dockerfiles, stacks + prod + overrides + include


def _compose_counts(scale: float, dockerfiles: int) -> tuple[int, int, int, int]:
    """(stack compose files, compose.prod.yaml files, override files, included files) for a scale."""
    stacks = max(1, round(BASE_COMPOSES * scale))
    return (
        stacks,
        max(1, round(BASE_PROD * scale)),
        min(stacks, max(1, round(BASE_OVERRIDES * scale))),
        1 if _standalone(dockerfiles) >= 2 else 0,
    )


def _standalone(dockerfiles: int) -> int:
    """How many Dockerfiles no stack's compose file builds (tools)."""
    return max(1, round(dockerfiles * 0.1))


def _name(pool: tuple[str, ...], i: int) -> str:
    return pool[i % len(pool)] + ("" if i < len(pool) else f"{i // len(pool) + 1}")


# --------------------------------------------------------------------------- Dockerfiles


@dataclass
class _Service:
    stack: str
    name: str
    dir: str  # repo-relative service directory
    lang: str  # python | node | go
    dockerfile: str  # repo-relative path
    context: str  # repo-relative context directory
    mode: str  # root | stack | service | outside | include | extends | inferred
    port: int
    multi: bool
    targets: list[str] = field(default_factory=list)


def _mod(svc: _Service) -> str:
    """The service's code package (variants like api-dev share the service directory's)."""
    return posixpath.basename(svc.dir).replace("-", "_")


def _src(svc: _Service) -> str:
    """The service directory as COPY sees it from the build context."""
    rel = posixpath.relpath(svc.dir, svc.context) if svc.context != "." else svc.dir
    return "." if rel == "." else rel


def _apt(rng: random.Random, packages: str) -> str:
    style = rng.random()
    if style < 0.45:  # the usual mistakes: no --no-install-recommends, lists left behind
        return f"RUN apt-get update && apt-get install -y {packages}"
    if style < 0.7:
        return (
            f"RUN apt-get update \\\n    && apt-get install -y --no-install-recommends {packages} \\\n"
            "    && rm -rf /var/lib/apt/lists/*"
        )
    if style < 0.85:
        return f"RUN apt-get update\nRUN apt-get install -y {packages}"
    return ""


def _python(rng: random.Random, svc: _Service) -> str:
    src = _src(svc)
    version = rng.choice(("3.11", "3.12", "3.12", "3.13"))
    base = rng.choice(
        (
            f"python:{version}-slim",
            f"python:{version}-slim",
            f"python:{version}",
            "python:latest" if rng.random() < 0.15 else f"python:{version}-slim-bookworm",
        )
    )
    pip = rng.choice(("plain", "plain", "no-cache", "mount", "defeated", "upgrade"))
    copy_all_first = rng.random() < 0.45
    req = "requirements.txt" if src == "." else f"{src}/requirements.txt"
    lines = []
    if rng.random() < 0.3:
        lines += [
            f"ARG PYTHON_VERSION={version}",
            "FROM python:${PYTHON_VERSION}-slim" + (" AS build" if svc.multi else ""),
        ]
    else:
        lines.append(f"FROM {base}" + (" AS build" if svc.multi else ""))
    if rng.random() < 0.2:
        lines.append('LABEL maintainer="platform@example.com"')
    lines += ["", "WORKDIR /app"]
    apt = _apt(rng, rng.choice(("curl", "gcc libpq-dev", "build-essential curl", "git")))
    if apt:
        lines.append(apt)
    if rng.random() < 0.3 and svc.mode == "root":
        lines.append("COPY libs/common /app/libs/common")
    if copy_all_first:
        lines.append(f"COPY {src} ." if src != "." else "COPY . .")
    else:
        lines += ["# Dependencies first, so code changes don't reinstall them.", f"COPY {req} requirements.txt"]
    if pip == "plain":
        lines.append("RUN pip install -r requirements.txt")
    elif pip == "upgrade":
        lines += ["RUN pip install --upgrade pip", "RUN pip install -r requirements.txt"]
    elif pip == "no-cache":
        lines.append("RUN pip install --no-cache-dir -r requirements.txt")
    elif pip == "mount":
        lines.append("RUN --mount=type=cache,target=/root/.cache/pip \\\n    pip install -r requirements.txt")
    else:
        lines.append(
            "RUN --mount=type=cache,target=/root/.cache/pip \\\n    pip install --no-cache-dir -r requirements.txt"
        )
    if not copy_all_first:
        lines.append(f"COPY {src}/{_mod(svc)} ./{_mod(svc)}" if src != "." else f"COPY {_mod(svc)} ./{_mod(svc)}")
    if svc.multi:
        lines += [
            "",
            "FROM build AS test",
            "RUN pip install pytest && cd /app && python -m pytest -q tests",
            "",
            f"FROM python:{version}-slim AS runtime",
            "WORKDIR /app",
            "COPY --from=build /usr/local/lib/python3*/site-packages /usr/local/lib/python3/site-packages",
            "COPY --from=build /app /app",
        ]
        svc.targets = ["test", "runtime"]
    if rng.random() < 0.5:
        lines += ["RUN useradd --create-home app", "USER app"]
    lines.append(f"EXPOSE {svc.port}")
    if rng.random() < 0.4:
        lines.append(f"HEALTHCHECK --interval=30s CMD curl -f http://localhost:{svc.port}/health || exit 1")
    lines.append(f'CMD ["python", "-m", "{_mod(svc)}.main"]')
    return "\n".join(lines) + "\n"


def _node(rng: random.Random, svc: _Service) -> str:
    src = _src(svc)
    version = rng.choice(("18", "20", "20", "22"))
    base = rng.choice((f"node:{version}", f"node:{version}-slim", f"node:{version}-alpine", "node:latest"))
    pkg = "package*.json ./" if src == "." else f"{src}/package.json {src}/package-lock.json ./"
    lines = [f"FROM {base}" + (" AS build" if svc.multi else ""), "WORKDIR /app"]
    if "alpine" in base and rng.random() < 0.6:
        lines.append("RUN apk add python3 make g++")
    if rng.random() < 0.5:
        lines += ["COPY . ." if src == "." else f"COPY {src} .", rng.choice(("RUN npm install", "RUN npm ci"))]
    else:
        lines += [
            f"COPY {pkg}",
            rng.choice(("RUN npm install", "RUN npm ci", "RUN --mount=type=cache,target=/root/.npm npm ci")),
            "COPY . ." if src == "." else f"COPY {src} .",
        ]
    if svc.multi:
        lines += [
            "RUN npm run build",
            "",
            "FROM nginx:alpine",
            "COPY --from=build /app/dist /usr/share/nginx/html",
            "EXPOSE 80",
        ]
        if rng.random() < 0.4:
            lines.append("HEALTHCHECK CMD curl -f http://localhost/ || exit 1")
        return "\n".join(lines) + "\n"
    if rng.random() < 0.3:
        lines.append("USER node")
    lines += ["ENV NODE_ENV=production", f"EXPOSE {svc.port}"]
    if rng.random() < 0.4:
        lines.append(f"HEALTHCHECK CMD curl -f http://localhost:{svc.port}/healthz || exit 1")
    lines.append(rng.choice(('CMD ["node", "src/server.js"]', "CMD npm start")))
    return "\n".join(lines) + "\n"


def _go(rng: random.Random, svc: _Service) -> str:
    src = _src(svc)
    version = rng.choice(("1.21", "1.22", "1.23"))
    mods = "go.mod go.sum ./" if src == "." else f"{src}/go.mod {src}/go.sum ./"
    lines = [f"FROM golang:{version} AS build", "WORKDIR /src"]
    if rng.random() < 0.5:
        lines += [
            "COPY . ." if src == "." else f"COPY {src} .",
            "RUN go mod download",
            f"RUN CGO_ENABLED=0 go build -o /out/{svc.name} ./cmd/{_mod(svc)}",
        ]
    else:
        lines += [
            f"COPY {mods}",
            "RUN --mount=type=cache,target=/go/pkg/mod go mod download",
            "COPY . ." if src == "." else f"COPY {src} .",
            "RUN --mount=type=cache,target=/go/pkg/mod \\\n"
            "    --mount=type=cache,target=/root/.cache/go-build \\\n"
            f"    CGO_ENABLED=0 go build -o /out/{svc.name} ./cmd/{_mod(svc)}",
        ]
    final = rng.choice(("gcr.io/distroless/static-debian12", "alpine:3.20", "debian:bookworm-slim", "ubuntu"))
    lines += ["", f"FROM {final}"]
    if final.startswith("debian") or final == "ubuntu":
        lines.append(_apt(rng, "ca-certificates curl") or "RUN apt-get update && apt-get install -y ca-certificates")
    elif final.startswith("alpine"):
        lines.append("RUN apk add ca-certificates")
    lines += [f"COPY --from=build /out/{svc.name} /usr/local/bin/{svc.name}", f"EXPOSE {svc.port}"]
    if final != "gcr.io/distroless/static-debian12" and rng.random() < 0.5:
        lines.append(f"HEALTHCHECK CMD curl -f http://localhost:{svc.port}/health || exit 1")
    lines.append(f'ENTRYPOINT ["/usr/local/bin/{svc.name}"]')
    return "\n".join(lines) + "\n"


def dockerfile_text(rng: random.Random, svc: _Service) -> str:
    text = {"python": _python, "node": _node, "go": _go}[svc.lang](rng, svc)
    if rng.random() < 0.25:
        text = f"# {svc.stack}/{svc.name}: built by CI on every merge.\n" + text
    if rng.random() < 0.1:
        text = "# syntax=docker/dockerfile:1\n" + text
    return text


# --------------------------------------------------------------------------- compose


def _rel(path: str, base: str) -> str:
    """``path`` as a compose file in ``base`` writes it (``.``, ``./x`` or ``../x``)."""
    rel = posixpath.relpath(path, base or ".")
    return "." if rel == "." else rel if rel.startswith("..") else "./" + rel


def _compose_text(
    rng: random.Random,
    base: str,
    members: list[_Service],
    stack: str,
    env: dict[str, str] | None = None,
    head: tuple[str, ...] = (),
    tail: tuple[str, ...] = (),
) -> str:
    """A stack's compose file; ``env`` maps a service to the variable its context is written as."""
    out = [f"# {stack} stack: local development.", *head, "services:"]
    for svc in members:
        out.append(f"  {svc.name}:")
        ctx = _rel(svc.context, base)
        df = posixpath.relpath(svc.dockerfile, svc.context)
        if env and svc.name in env:
            out += ["    build:", f'      context: "{env[svc.name]}"']
            if df != "Dockerfile":
                out.append(f"      dockerfile: {df}")
        elif df == "Dockerfile" and rng.random() < 0.6:
            out.append(f"    build: {ctx}")
        else:
            out += ["    build:", f"      context: {ctx}"]
            if df != "Dockerfile":
                out.append(f"      dockerfile: {df}")
            if rng.random() < 0.2:
                out += ["      args:", f"        SERVICE: {svc.name}"]
        if svc.targets and rng.random() < 0.7:
            # A second service builds the same Dockerfile, stopping at its test stage.
            out += [
                f"  {svc.name}-test:",
                "    build:",
                f"      context: {ctx}",
                f"      dockerfile: {df}",
                f"      target: {svc.targets[0]}",
                "    profiles: [test]",
            ]
            continue
        out += ["    ports:", f'      - "{svc.port}:{svc.port}"']
        if rng.random() < 0.6:
            out += [
                "    environment:",
                f"      DATABASE_URL: postgres://app:app@db:5432/{stack}",
                "      REDIS_URL: redis://cache:6379/0",
            ]
        if rng.random() < 0.5:
            out += ["    depends_on:", "      - db", "      - cache"]
        limits = rng.random()
        if limits < 0.35:
            out += [
                "    deploy:",
                "      resources:",
                "        limits:",
                '          cpus: "1.0"',
                "          memory: 512M",
            ]
        elif limits < 0.6:
            out.append("    mem_limit: 256m")
    out += [
        "  db:",
        "    image: postgres:16-alpine",
        "    environment:",
        "      POSTGRES_PASSWORD: app",
        "  cache:",
        "    image: redis:7.2-alpine",
        "    healthcheck:",
        '      test: ["CMD", "redis-cli", "ping"]',
        "      interval: 5s",
        *tail,
    ]
    return "\n".join(out) + "\n"


def _prod_text(svc: _Service) -> str:
    """``compose.prod.yaml`` in the service's directory: the same Dockerfile, built from another context."""
    if svc.context == svc.dir:  # built from its own directory by the stack: production builds from the root
        context, dockerfile = _rel(".", svc.dir), svc.dockerfile
    else:  # built from the root or the stack: production builds from its own directory
        context, dockerfile = ".", posixpath.relpath(svc.dockerfile, svc.dir)
    build = (
        [f"    build: {context}"]
        if dockerfile == "Dockerfile"
        else ["    build:", f"      context: {context}", f"      dockerfile: {dockerfile}"]
    )
    return (
        "\n".join(
            [
                f"# {svc.stack}/{svc.name}: the production image (docker compose -f compose.prod.yaml build).",
                "services:",
                f"  {svc.name}:",
                *build,
                f"    image: registry.example.com/{svc.stack}/{svc.name}:prod",
                "    restart: always",
            ]
        )
        + "\n"
    )


def _copies_named_paths(text: str) -> bool:
    """Does a Dockerfile COPY a named path from its context (which another context may lack), not just ``.``?"""
    return any(
        line.split()[1] not in (".", "./")
        for line in text.splitlines()
        if line.startswith("COPY ") and "--from" not in line
    )


def _override_text(base: str, members: list[_Service], texts: dict[str, str]) -> str:
    """An override file: one service moves to another context, another gets a build arg and debug logging."""
    out = ["# Local overrides: docker compose merges this file onto the stack's.", "services:"]
    first = next((m for m in members if _copies_named_paths(texts[m.dockerfile])), members[0])
    other = first.dir if first.context != first.dir else posixpath.dirname(first.dir)
    out += [
        f"  {first.name}:",
        "    build:",
        f"      context: {_rel(other, base)}",
        f"      dockerfile: {posixpath.relpath(first.dockerfile, other)}",
    ]
    for svc in [m for m in members if m is not first][:1]:
        out += [
            f"  {svc.name}:",
            "    build:",
            "      args:",
            '        DEBUG: "1"',
            "    environment:",
            "      LOG_LEVEL: debug",
        ]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- filler content


class _Pools:
    """Small content blobs per kind, built once from the seeded generator and reused."""

    def __init__(self, rng: random.Random) -> None:
        def lines(template: str, n: int, lo: int, hi: int) -> list[bytes]:
            return [
                ("".join(template.format(i=j, w=rng.choice(WORDS)) for j in range(rng.randint(lo, hi)))).encode()
                for _ in range(n)
            ]

        self.py = lines("def {w}_{i}(value):\n    return value * {i}\n\n", 48, 2, 40)
        self.js = lines("function {w}{i}(x) {{ return x + {i}; }}\nmodule.exports.{w}{i} = {w}{i};\n", 48, 2, 40)
        self.go = [b"package main\n\n" + b for b in lines("func {w}{i}(x int) int {{ return x + {i} }}\n", 32, 2, 30)]
        self.md = lines("## {w} {i}\n\nSome notes about {w}, kept short.\n\n", 32, 1, 20)
        self.json = lines('{{"id": {i}, "name": "{w}", "tags": ["{w}", "x"]}}\n', 32, 1, 50)
        self.test = lines("def test_{w}_{i}():\n    assert {i} == {i}\n\n", 32, 1, 15)
        self.txt = lines("{w} {i}\n", 16, 1, 30)
        self.pyc = [bytes(rng.getrandbits(8) for _ in range(rng.randint(200, 2000))) for _ in range(8)]
        self.rng = rng


def _fill_node_modules(w: _Writer, rng: random.Random, p: _Pools, base: str, n: int) -> None:
    i = 0
    while n > 0:
        name = _name(NPM, i) if rng.random() < 0.85 else f"@{rng.choice(WORDS)}/{_name(NPM, i)}"
        i += 1
        pkg = f"{base}/node_modules/{name}"
        files = [f"{pkg}/package.json", f"{pkg}/README.md", f"{pkg}/LICENSE", f"{pkg}/index.js"]
        files += [f"{pkg}/lib/{rng.choice(WORDS)}{k}.js" for k in range(rng.randint(0, 12))]
        if rng.random() < 0.3:
            files += [f"{pkg}/dist/{name.split('/')[-1]}.min.js", f"{pkg}/dist/{name.split('/')[-1]}.d.ts"]
        for path in files[:n]:
            kind = p.md if path.endswith((".md", "LICENSE")) else p.json if path.endswith(".json") else p.js
            w.write(path, rng.choice(kind))
        n -= min(n, len(files))


def _fill_venv(w: _Writer, rng: random.Random, p: _Pools, base: str, n: int) -> None:
    site = f"{base}/.venv/lib/python3.12/site-packages"
    i = 0
    while n > 0:
        name = _name(PYPI, i)
        i += 1
        files = [
            f"{site}/{name}/__init__.py",
            f"{site}/{name}-1.{i}.0.dist-info/METADATA",
            f"{site}/{name}-1.{i}.0.dist-info/RECORD",
        ]
        mods = [f"{rng.choice(WORDS)}{k}" for k in range(rng.randint(1, 10))]
        files += [f"{site}/{name}/{m}.py" for m in mods]
        files += [f"{site}/{name}/__pycache__/{m}.cpython-312.pyc" for m in mods]
        for path in files[:n]:
            w.write(path, rng.choice(p.pyc if path.endswith(".pyc") else p.py if path.endswith(".py") else p.txt))
        n -= min(n, len(files))


def _fill_vendor(w: _Writer, rng: random.Random, p: _Pools, base: str, n: int) -> None:
    i = 0
    while n > 0:
        mod = _name(GOMODS, i)
        i += 1
        files = [f"{base}/vendor/{mod}/LICENSE"] + [
            f"{base}/vendor/{mod}/{rng.choice(WORDS)}{k}.go" for k in range(rng.randint(2, 25))
        ]
        for path in files[:n]:
            w.write(path, rng.choice(p.md if path.endswith("LICENSE") else p.go))
        n -= min(n, len(files))


def _fill_tree(
    w: _Writer, rng: random.Random, base: str, n: int, ext: str, pool: list[bytes], per_dir: int = 12
) -> None:
    """n files named like sources, spread over nested directories under base."""
    k = 0
    while k < n:
        depth = rng.randint(0, 2)
        d = "/".join([base] + [f"{rng.choice(WORDS)}{rng.randint(0, 9)}" for _ in range(depth)])
        for _ in range(min(per_dir, n - k)):
            path = f"{d}/{rng.choice(WORDS)}_{k}{ext}"
            w.write(path, rng.choice(pool))
            k += 1


def _allocate(total: int, weights: list[float]) -> list[int]:
    """Split total into integer parts proportional to weights (largest remainder)."""
    s = sum(weights) or 1.0
    raw = [total * x / s for x in weights]
    parts = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - parts[i], reverse=True)[: total - sum(parts)]:
        parts[i] += 1
    return parts


# --------------------------------------------------------------------------- the repository


def generate(out: Path, scale: float = 1.0, seed: int = 1) -> Manifest:
    """Write the monorepo into ``out`` (which must be empty or absent) and return its manifest."""
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty")
    rng = random.Random(seed)
    n_files, n_dockerfiles, _ = counts(scale)
    n_composes, n_prod, n_overrides, n_include = _compose_counts(scale, n_dockerfiles)
    w = _Writer(out)
    man = Manifest(
        root=str(out),
        scale=scale,
        seed=seed,
        shapes={"prod": [], "override": [], "include": [], "extends": [], "env": [], "outside": []},
    )
    pools = _Pools(rng)

    # Which Dockerfiles: a few standalone (no stack's compose builds them), the rest spread over the stacks.
    n_standalone = _standalone(n_dockerfiles)
    per_stack = _allocate(n_dockerfiles - n_standalone, [1.0] * n_composes)
    services: list[_Service] = []
    fillers: list[tuple[str, str, float]] = []  # (kind, base dir, weight)
    port = 8000
    stack_files: list[tuple[str, str, list[_Service]]] = []  # (compose path, its directory, its services)
    all_texts: dict[str, str] = {}  # Dockerfile -> its text
    for s, count in enumerate(per_stack):
        stack = _name(STACKS, s)
        stack_dir = f"apps/{stack}"
        compose_base = "" if s == 0 else stack_dir
        compose_name = (
            "docker-compose.yml"
            if s == 0
            else rng.choice(("docker-compose.yml", "compose.yaml", "docker-compose.yaml", "compose.yml"))
        )
        members: list[_Service] = []
        j = 0
        while len(members) < count:
            lang = rng.choices(("python", "node", "go"), (0.45, 0.35, 0.2))[0]
            # A second Dockerfile for the previous service now and then (Dockerfile.dev, <name>.dockerfile).
            if members and members[-1].dockerfile.endswith("/Dockerfile") and rng.random() < 0.12:
                prev = members[-1]
                alt = rng.choice(("Dockerfile.dev", f"{prev.name}.dockerfile"))
                svc = _Service(
                    stack,
                    f"{prev.name}-dev",
                    prev.dir,
                    prev.lang,
                    f"{prev.dir}/{alt}",
                    prev.context,
                    prev.mode,
                    prev.port + 1,
                    multi=False,
                )
            else:
                name = _name(SERVICES, j)
                j += 1
                svc_dir = f"{stack_dir}/{name}"
                # Every stack's third service keeps its Dockerfile outside its context (../docker/x.Dockerfile).
                mode = "outside" if j == 3 else rng.choices(("root", "stack", "service"), (0.35, 0.2, 0.45))[0]
                context = {"root": ".", "stack": stack_dir, "service": svc_dir, "outside": svc_dir}[mode]
                dockerfile = f"{stack_dir}/docker/{name}.Dockerfile" if mode == "outside" else f"{svc_dir}/Dockerfile"
                svc = _Service(
                    stack,
                    name,
                    svc_dir,
                    lang,
                    dockerfile,
                    context,
                    mode,
                    port,
                    multi=lang == "go" or rng.random() < 0.35,
                )
                port += 10
                fillers.append((lang, svc_dir, 1.0))
            members.append(svc)
        services += members
        compose_path = posixpath.join(compose_base, compose_name) if compose_base else compose_name
        texts = {m.dockerfile: dockerfile_text(rng, m) for m in members}
        for path, text in texts.items():
            w.write(path, text)
        all_texts.update(texts)
        man.shapes["outside"] += [m.dockerfile for m in members if m.mode == "outside"]
        stack_files.append((compose_path, compose_base, members))
        fillers.append(("stack", stack_dir, 0.3))

    tools: list[_Service] = []
    for t in range(n_standalone):
        name = _name(TOOLS, t)
        lang = rng.choice(("python", "node", "go"))
        tool_dir = f"tools/{name}"
        # The first tool is built through extends, the second by an included compose file; the rest by no compose.
        mode = {0: "extends", 1: "include"}.get(t, "inferred") if n_include else "inferred"
        df = f"{tool_dir}/Dockerfile" if rng.random() < 0.7 or mode != "inferred" else f"ci/{name}.dockerfile"
        svc = _Service("tools", name, tool_dir, lang, df, posixpath.dirname(df), mode, 9000 + t, multi=lang == "go")
        if df.startswith("ci/"):
            svc.context = "."
            svc.mode = "root"
        services.append(svc)
        tools.append(svc)
        w.write(df, dockerfile_text(rng, svc))
        fillers.append((lang, tool_dir, 0.3))
    man.dockerfiles = sorted(s.dockerfile for s in services)
    man.services = sum(1 for s in services if s.mode != "inferred")

    # The compose files: one per stack, then the shapes (see the module docstring).
    included = next((t for t in tools if t.mode == "include"), None)
    extended = next((t for t in tools if t.mode == "extends"), None)
    env_lines = []
    for s, (compose_path, compose_base, members) in enumerate(stack_files):
        env, head, tail = {}, (), ()
        if s == 0:
            first, last = members[0], members[-1]
            var = f"{first.stack.upper()}_{first.name.upper().replace('-', '_')}_CONTEXT"
            env[first.name] = "${" + var + "}"
            env_lines.append(f"{var}={_rel(first.context, compose_base)}")
            if last is not first:
                var = f"{last.stack.upper()}_{last.name.upper().replace('-', '_')}_CONTEXT"
                env[last.name] = "${" + var + ":-" + _rel(last.context, compose_base) + "}"
            man.shapes["env"].append(compose_path)
            if included is not None:
                head = ("include:", "  - infra/compose.yaml")
                man.shapes["include"].append(compose_path)
            if extended is not None:
                tail = (
                    f"  {extended.name}:",
                    "    extends:",
                    "      file: common/services.yml",
                    f"      service: {extended.name}-base",
                    '    ports: ["9100:9100"]',
                )
                man.shapes["extends"].append(compose_path)
        w.write(compose_path, _compose_text(rng, compose_base, members, members[0].stack, env, head, tail))
        man.composes.append(compose_path)
        if s < n_overrides:
            name = (
                "docker-compose.override.yml"
                if posixpath.basename(compose_path).startswith("docker-")
                else "compose.override.yaml"
            )
            path = posixpath.join(compose_base, name) if compose_base else name
            w.write(path, _override_text(compose_base, members, all_texts))
            man.composes.append(path)
            man.shapes["override"].append(path)
    if env_lines:
        w.write(
            ".env",
            "# Build contexts the root compose file reads (docker compose reads this file).\n"
            "COMPOSE_PROJECT_NAME=monorepo\n" + "\n".join(env_lines) + "\n",
        )
    if included is not None:
        w.write(
            "infra/compose.yaml",
            "# Operations jobs: included by the root compose file.\nservices:\n"
            f"  {included.name}:\n    build: {_rel(included.context, 'infra')}\n    profiles: [ops]\n",
        )
        man.composes.append("infra/compose.yaml")
    if extended is not None:
        w.write(
            "common/services.yml",
            "# Service templates (compose extends).\nservices:\n"
            f"  {extended.name}-base:\n    build:\n      context: {_rel(extended.context, 'common')}\n"
            "      args:\n        PIP_INDEX_URL: https://pypi.org/simple\n    restart: unless-stopped\n",
        )
    # compose.prod.yaml in service directories: services whose Dockerfiles COPY named paths first (their
    # second context breaks), the first of each stack, then the second of each...
    ranked = [
        (not _copies_named_paths(all_texts[m.dockerfile]), rank, len(stack_files) * rank + s, m)
        for s, (_, _, members) in enumerate(stack_files)
        for rank, m in enumerate(x for x in members if not x.name.endswith("-dev"))
    ]
    for *_, svc in sorted(ranked, key=lambda r: r[:3])[:n_prod]:
        path = f"{svc.dir}/compose.prod.yaml"
        w.write(path, _prod_text(svc))
        man.composes.append(path)
        man.shapes["prod"].append(path)
    man.composes.sort()

    # Per-service basics: what the Dockerfiles COPY, a README, a few tests.
    seen_dirs = set()
    for svc in services:
        if svc.dir in seen_dirs:
            continue
        seen_dirs.add(svc.dir)
        d, mod = svc.dir, _mod(svc)
        w.write(f"{d}/README.md", rng.choice(pools.md))
        if svc.lang == "python":
            w.write(f"{d}/requirements.txt", "\n".join(rng.sample(PYPI, 6)) + "\n")
            w.write(f"{d}/{mod}/__init__.py", b"")
            w.write(f"{d}/{mod}/main.py", rng.choice(pools.py))
            w.write(f"{d}/tests/test_{mod}.py", rng.choice(pools.test))
            if rng.random() < 0.3:
                w.write(f"{d}/.env", "SECRET_KEY=dev-only\nDEBUG=1\n")
        elif svc.lang == "node":
            w.write(
                f"{d}/package.json",
                json.dumps(
                    {"name": svc.name, "version": "1.0.0", "dependencies": {n: "^1.0.0" for n in rng.sample(NPM, 5)}}
                ),
            )
            w.write(f"{d}/package-lock.json", rng.choice(pools.json) * 20)
            w.write(f"{d}/src/server.js", rng.choice(pools.js))
            w.write(f"{d}/tests/server.test.js", rng.choice(pools.js))
        else:
            w.write(f"{d}/go.mod", f"module example.com/{svc.stack}/{svc.name}\n\ngo 1.22\n")
            w.write(f"{d}/go.sum", rng.choice(pools.txt))
            w.write(f"{d}/cmd/{mod}/main.go", rng.choice(pools.go))

    # .dockerignore files: in many service-dir contexts, a few stack contexts, a few per-Dockerfile ones.
    # The repository root has none (root-context builds send everything: a common, real problem).
    ignore_body = ".git\n**/__pycache__\n**/*.pyc\n**/node_modules\n**/.venv\n**/tests\n**/docs\n.env\n"
    for svc in services:
        candidates = []
        if svc.mode == "service" and rng.random() < 0.5:
            candidates.append(f"{svc.context}/.dockerignore")
        elif svc.mode == "stack" and rng.random() < 0.3:
            candidates.append(f"{svc.context}/.dockerignore")
        elif svc.mode == "outside" and rng.random() < 0.5:
            candidates.append(f"{svc.context}/.dockerignore")
        elif svc.mode == "root" and rng.random() < 0.15:
            candidates.append(f"{svc.dockerfile}.dockerignore")
        for path in candidates:
            if path not in w.paths:
                # Each file also names something of its own, as real ones do: no two are alike, so no
                # analysis can do one ignore file's work once for all (VERSION 2).
                own = path.replace("/", "-") + ".local\n"
                w.write(path, (ignore_body if rng.random() < 0.7 else ".git\nnode_modules\n") + own)
                man.dockerignores.append(path)

    # Shared top-level content.
    w.write("README.md", "# Synthetic monorepo\n\nGenerated by bench/monorepo.py for benchmarks.\n")
    w.write("pyproject.toml", '[project]\nname = "monorepo"\nversion = "0"\n')
    w.write(".gitignore", "__pycache__/\n.venv/\nnode_modules/\ndist/\n")
    w.write("libs/common/pyproject.toml", '[project]\nname = "common"\nversion = "0"\n')
    w.write("libs/common/common/__init__.py", b"")
    fillers += [("libs", "libs", 30.0), ("docs", "docs", 15.0), ("fixtures", "fixtures", 8.0)]

    # A few larger files (fixtures, images, a database dump): ~5 per unit of scale.
    for k in range(max(1, round(5 * scale))):
        size = rng.choice((256, 512, 1024, 2048)) * 1024
        chunk = rng.randbytes(4096)
        w.write(
            f"fixtures/large/{rng.choice(WORDS)}_{k}.{rng.choice(('bin', 'png', 'sql', 'parquet'))}",
            chunk * (size // 4096),
        )

    # Everything else: vendored trees, sources, tests, docs, fixtures, up to the exact file count.
    remaining = n_files - len(w.paths)
    if remaining < 0:
        raise ValueError(f"scale {scale} is too small: the fixed files alone are {len(w.paths)}")
    weights = {"python": 9.0, "node": 14.0, "go": 7.0, "stack": 1.0, "libs": 1.0, "docs": 1.0, "fixtures": 1.0}
    shares = _allocate(remaining, [weights[kind] * wt for kind, _, wt in fillers])
    for (kind, base, _), n in zip(fillers, shares):
        if n <= 0:
            continue
        if kind == "python":
            venv = n // 2 if rng.random() < 0.5 else 0
            if venv:
                _fill_venv(w, rng, pools, base, venv)
            rest = n - venv
            _fill_tree(w, rng, f"{base}/tests", rest // 3, ".py", pools.test)
            _fill_tree(
                w, rng, f"{base}/{posixpath.basename(base).replace('-', '_')}/lib", rest - rest // 3, ".py", pools.py
            )
        elif kind == "node":
            modules = n * 3 // 4
            _fill_node_modules(w, rng, pools, base, modules)
            _fill_tree(w, rng, f"{base}/src/components", n - modules, ".js", pools.js)
        elif kind == "go":
            vendor = n // 2
            _fill_vendor(w, rng, pools, base, vendor)
            _fill_tree(w, rng, f"{base}/internal", n - vendor, ".go", pools.go)
        elif kind == "stack":
            _fill_tree(w, rng, f"{base}/docs", n, ".md", pools.md)
        elif kind == "libs":
            _fill_tree(w, rng, f"{base}/common/common", n, ".py", pools.py)
        elif kind == "docs":
            _fill_tree(w, rng, base, n, ".md", pools.md)
        else:
            _fill_tree(w, rng, base, n, ".json", pools.json)

    man.files = len(w.paths)
    man.bytes = w.bytes
    man.seconds = time.perf_counter() - started
    return man


def ensure(out: Path, scale: float, seed: int = 1) -> Manifest:
    """Generate into ``out/scale-<scale>`` unless an identical tree is already there; return its manifest."""
    out = Path(out)
    label = f"{scale:g}".replace(".", "_")
    tree, stamp = out / f"scale-{label}", out / f"scale-{label}.json"
    key = {"version": VERSION, "scale": scale, "seed": seed}
    if stamp.is_file() and tree.is_dir():
        try:
            saved = json.loads(stamp.read_text())
            if saved.get("key") == key:
                man = Manifest(**saved["manifest"])
                man.seconds = 0.0
                return man
        except (ValueError, TypeError, KeyError):
            pass
    if tree.exists():
        shutil.rmtree(tree)
    stamp.unlink(missing_ok=True)
    man = generate(tree, scale, seed)
    stamp.write_text(json.dumps({"key": key, "manifest": asdict(man)}))
    return man


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the synthetic benchmark monorepo.")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="empty or absent directory to write into")
    args = parser.parse_args(argv)
    man = generate(args.out, args.scale, args.seed)
    print(
        f"{man.root}: {man.files} files ({man.bytes / 1e6:.1f} MB), {len(man.dockerfiles)} Dockerfiles, "
        f"{len(man.composes)} compose files, {len(man.dockerignores)} .dockerignore files, "
        f"generated in {man.seconds:.1f}s"
    )


if __name__ == "__main__":
    main()
