"""Cache rules: BuildKit cache mounts that are missing, or present but defeated."""

from __future__ import annotations

import re
from typing import Iterable

from engine.artifacts import Applicability, Category, Severity
from pipelines.docker_optimization.dockerfile import Dockerfile, Instruction
from pipelines.docker_optimization.rules import Hit, rule

PIP_INSTALL = re.compile(r"\b(?:pip3?|python3?(?:\.\d+)?\s+-m\s+pip)\s+install\b")
NO_CACHE_DIR = re.compile(r"(?<!\S)--no-cache-dir\b")
PIP_CACHE_TARGETS = ("/root/.cache/pip", "/root/.cache")


def pip_cache_mount(ins: Instruction) -> dict[str, str] | None:
    for mount in ins.mounts():
        if mount.get("type") == "cache" and mount.get("target", mount.get("dst", "")).rstrip("/") in PIP_CACHE_TARGETS:
            return mount
    return None


def pip_runs(df: Dockerfile) -> Iterable[Instruction]:
    return (i for i in df.of("RUN") if PIP_INSTALL.search(i.command))


@rule("CA001", "pip-install-without-cache-mount", Category.performance, Severity.warning, "dockerfile",
      fix=Applicability.safe, fix_group="pip-cache", phase="dockerfiles")
def pip_install_without_cache_mount(df: Dockerfile) -> Iterable[Hit]:
    """`pip install` runs without a BuildKit cache mount for pip's cache.

    Why: every time the layer is rebuilt (any change to the files copied before
    it), pip downloads and builds every wheel again. A cache mount keeps pip's
    cache on the builder between builds without putting it in the image.

    Example:
        RUN pip install -r requirements.txt

    Use instead:
        RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt
    """
    for ins in pip_runs(df):
        if pip_cache_mount(ins) is None:
            yield Hit(ins.start_line, "pip install without a cache mount: wheels are downloaded again on every rebuild",
                      ins.original, ins.end_line)


@rule("CA002", "cache-mount-defeated", Category.performance, Severity.warning, "dockerfile",
      fix=Applicability.safe, fix_group="pip-cache", phase="dockerfiles")
def cache_mount_defeated(df: Dockerfile) -> Iterable[Hit]:
    """A RUN has a pip cache mount and also `--no-cache-dir`, so the mount caches nothing.

    Why: `--no-cache-dir` tells pip not to read or write its cache. Beside a
    cache mount it silently turns the optimization off: builds look cached
    in the Dockerfile and download everything every time.

    Example:
        RUN --mount=type=cache,target=/root/.cache/pip pip install --no-cache-dir -r requirements.txt

    Use instead:
        RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt
    """
    for ins in pip_runs(df):
        if pip_cache_mount(ins) is not None and NO_CACHE_DIR.search(ins.command):
            yield Hit(ins.start_line, "--no-cache-dir beside a pip cache mount: the mount caches nothing",
                      ins.original, ins.end_line)
