"""The .dockerignore matcher against a real Docker engine: what arrives in the image is the truth.

Each variant builds a context full of tricky files with ``COPY . /ctx`` and
compares the files that arrived with ``DockerIgnore(...).sent``. Which Docker
decides depends on the client (it walks the context and applies the patterns):
- "buildkit": the ``docker`` on PATH with DOCKER_BUILDKIT=1; a 20.10 client is
  the "legacy" flavor, a 23+ one (with buildx) the "buildkit" flavor;
- "classic": a Docker 23+ client on PATH with DOCKER_BUILDKIT=0 (skipped without one).

Needs DOCKER_HOST and a local debian:bookworm-slim (no registry is used); on
this project's machines: ``eval "$(/work/shared/docker-sandbox/up.sh)"``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent_pipelines.pipelines.docker_optimization.model.dockerignore import FLAVORS, DockerIgnore

pytestmark = pytest.mark.docker

BASE = "debian:bookworm-slim"
DOCKERFILE = f"FROM {BASE}\nCOPY . /ctx\nRUN find /ctx -type f | sort > /files.txt\n"

FILES = [
    "node_modules/keep/index.js",
    "node_modules/lib/a.js",
    "web/node_modules/react/index.js",
    "web/app.js",
    "top.pyc",
    "src/main.py",
    "src/mod.pyc",
    "src/deep/er/x.pyc",
    ".git/HEAD",
    ".git/objects/ab/cdef",
    "sub/.git/config",
    "!x.txt",
    "!.txt",
    "a.txt",
    "b.txt",
    "ab.txt",
    "a+.txt",
    "aa.txt",
    "^a.txt",
    "docs/index.md",
    "docs/keep.md",
    "docs/sub/deep.md",
    "docs/.md",
    "dir with space/file name.txt",
    "with space.txt",
    "a/b/c/other",
    "a/b/c/keep",
    "x/c/f",
    "x/y.txt",
    "xzy.txt",
    "log7",
    "logd",
    "a]b",
    "ab",
    "vendor/a/keep.go",
    "vendor/a/drop.go",
]


@dataclass(frozen=True)
class Variant:
    text: str  # the .dockerignore, byte for byte
    portable: bool = True  # every Docker version sends the same files


VARIANTS = {
    "root-only": Variant("node_modules\n*.pyc\n.git\n"),
    "any-depth": Variant("**/node_modules\n**/*.pyc\n**/.git\ndocs/**\n"),
    "reinclude-literal": Variant("node_modules\n!node_modules/keep/index.js\ndocs\n!docs/*.md\n*.txt\n!b.txt\n"),
    "all-but": Variant("**\n!src\n!Dockerfile\nsrc/**/*.pyc\n"),
    "classes-escapes": Variant("[!a].txt\nx?y.txt\n\\!x.txt\nlog\\d\n[a*]b\nwith\\ space.txt\n"),
    "cleaning-comments": Variant(
        "\ufeff# comment\n\n   \n/a.txt\n./x/../b.txt\ndocs/\n  ! docs/keep.md  \n# !a.txt\n\r\ndir with space/\r\n"
    ),
    "dockerfile-excluded": Variant("Dockerfile\n.dockerignore\n*.txt\n"),
    # where Docker 20.10 and 23+ disagree (see tests/test_dockerignore.py::test_versions_differ)
    "regexp-quirks": Variant("a+.txt\n**.md\n^a.txt\n", portable=False),
    "parent-depth": Variant("**/c\n!a/b/c/keep\n**/*.pyc\n!src\n", portable=False),
    "reinclude-wildcard": Variant(
        "**/node_modules\n!**/node_modules/keep/index.js\nvendor\n!vendor/*/keep.go\n", portable=False
    ),
}


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def client_major(docker: str) -> int | None:
    try:
        out = run([docker, "version", "--format", "{{.Client.Version}}"], timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.match(r"\s*(\d+)\.", out)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class Builder:
    docker: str
    buildkit: bool
    flavor: str

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, DOCKER_BUILDKIT="1" if self.buildkit else "0")


@pytest.fixture(scope="module")
def engine() -> str:
    """The docker client on PATH, once the engine behind DOCKER_HOST answers and has the base image."""
    if not os.environ.get("DOCKER_HOST"):
        pytest.skip("no Docker engine: DOCKER_HOST is not set")
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on PATH")
    try:
        info = run([docker, "info", "--format", "{{.ServerVersion}}"], timeout=30)
        image = run([docker, "image", "inspect", "--format", "{{.Id}}", BASE], timeout=30)
    except subprocess.TimeoutExpired:
        pytest.skip(f"Docker engine at {os.environ['DOCKER_HOST']} did not answer within 30 s")
    if info.returncode != 0:
        pytest.skip(f"Docker engine at {os.environ['DOCKER_HOST']} unreachable: {info.stderr.strip()[:200]}")
    if image.returncode != 0:
        pytest.skip(f"{BASE} is not in the engine and no registry is used")
    return docker


@pytest.fixture(scope="module", params=["buildkit", "classic"])
def builder(request: pytest.FixtureRequest, engine: str) -> Builder:
    major = client_major(engine)
    if request.param == "buildkit":
        if major is None or major < 23:
            return Builder(engine, True, "legacy")
        if run([engine, "buildx", "version"], timeout=30).returncode != 0:
            pytest.skip("a Docker 23+ client builds with BuildKit only through the buildx plugin, which is missing")
        return Builder(engine, True, "buildkit")
    clients = {
        os.path.realpath(p)
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if os.access(p := os.path.join(d, "docker"), os.X_OK)
    }
    modern = sorted(c for c in clients if (client_major(c) or 0) >= 23)
    if not modern:
        pytest.skip("no Docker 23+ client on PATH for the classic builder")
    return Builder(modern[0], False, "classic")


def build_and_list(builder: Builder, context: Path) -> set[str]:
    """Build ``context`` and return the context-relative paths of the files that arrived in /ctx."""
    tag = f"dockerignore-test-{uuid.uuid4().hex[:12]}"
    env = builder.env
    try:
        built = run([builder.docker, "build", "--network", "host", "-q", "-t", tag, str(context)], timeout=300, env=env)
        assert built.returncode == 0, f"docker build failed: {built.stderr[-2000:]}"
        listed = run(
            [builder.docker, "run", "--rm", "--network", "host", tag, "cat", "/files.txt"], timeout=120, env=env
        )
        assert listed.returncode == 0, f"docker run failed: {listed.stderr[-2000:]}"
    finally:
        run([builder.docker, "rmi", "-f", tag], timeout=120, env=env)
    return {line.removeprefix("/ctx/") for line in listed.stdout.splitlines() if line}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_engine_sends_what_the_matcher_says(name: str, builder: Builder, tmp_path: Path) -> None:
    variant = VARIANTS[name]
    for rel in FILES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel, encoding="utf-8")
    (tmp_path / "Dockerfile").write_text(DOCKERFILE, encoding="utf-8")
    (tmp_path / ".dockerignore").write_text(variant.text, encoding="utf-8", newline="")
    everything = FILES + ["Dockerfile", ".dockerignore"]
    if variant.portable:
        sizes = dict.fromkeys(everything, 0)
        answers = {
            flavor: frozenset(DockerIgnore.from_text(variant.text, flavor=flavor).sent(sizes)) for flavor in FLAVORS
        }
        assert len(set(answers.values())) == 1, f"{name} is not portable across Docker versions: {answers}"

    arrived = build_and_list(builder, tmp_path)

    ignore = DockerIgnore.from_text(variant.text, flavor=builder.flavor)
    predicted = {p for p in everything if not ignore.excluded(p)}
    if not builder.buildkit:  # the classic CLI always sends these two; the daemon drops them by its own rules
        arrived -= {"Dockerfile", ".dockerignore"}
        predicted -= {"Dockerfile", ".dockerignore"}
    assert arrived == predicted, (
        f"{builder.flavor}: the engine sent {sorted(arrived - predicted)} the matcher excludes, "
        f"and left out {sorted(predicted - arrived)} the matcher sends"
    )
