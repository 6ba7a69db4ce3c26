"""Context rules: what a build context sends, and whether COPY can find its sources."""

from __future__ import annotations

from typing import Iterable

from engine.artifacts import Applicability, Category, Severity
from pipelines.docker_optimization.dockerignore import DockerIgnore
from pipelines.docker_optimization.rules import Hit, rule

# What a build rarely needs: (pattern, probe path for .gitignore, why).
CANDIDATES: tuple[tuple[str, str, str], ...] = (
    (".git", ".git/HEAD", "version control"),
    ("**/.git", "", "version control"),
    ("**/__pycache__", "__pycache__/x.pyc", "bytecode caches"),
    ("**/*.pyc", "x.pyc", "bytecode caches"),
    ("**/.pytest_cache", ".pytest_cache/x", "tool caches"),
    ("**/.mypy_cache", ".mypy_cache/x", "tool caches"),
    ("**/.ruff_cache", ".ruff_cache/x", "tool caches"),
    ("**/node_modules", "node_modules/x", "installed packages"),
    ("**/.venv", ".venv/x", "virtualenvs"),
    ("**/venv", "venv/x", "virtualenvs"),
    ("**/dist", "dist/x", "build outputs"),
    ("**/build", "build/x", "build outputs"),
    ("**/coverage", "coverage/x", "coverage output"),
    ("**/.coverage", ".coverage", "coverage output"),
    ("**/tests", "", "tests"),
    ("**/docs", "", "docs"),
    ("**/reports", "reports/x", "reports"),
    ("**/.env", ".env", "local secrets"),
    ("**/.env.*", ".env.local", "local secrets"),
    ("**/docker-compose*.yml", "", "compose files"),
)
_UNNEEDED = DockerIgnore([pattern for pattern, _, _ in CANDIDATES])


@rule("CX001", "context-without-dockerignore", Category.performance, Severity.warning, "context",
      fix=Applicability.safe, fix_group="dockerignore", phase="dockerfiles")
def context_without_dockerignore(ctx) -> Iterable[Hit]:
    """A build context with files a build rarely needs has no .dockerignore.

    Fires when neither the context root nor the Dockerfile has an ignore file
    and the context is the repository root (where .git lives) or holds tests,
    docs, caches, virtualenvs, build outputs, .env files or the like.

    Why: the classic builder sends the whole directory to the engine on every
    build (.git, tests, node_modules, virtualenvs, local .env files), and
    `COPY . .` puts all of it in the image, where any change busts the cache.

    Example:
        services/api/  (Dockerfile, app/, tests/, .venv/, no .dockerignore)

    Use instead:
        a .dockerignore listing what the image doesn't need:
        .git
        **/__pycache__
        tests
    """
    if ctx.ignore_path:
        return
    files = ctx.files()
    if ctx.dir != "." and not any(_UNNEEDED.excluded(p) for p in files):
        return
    yield Hit(0, f"build context {ctx.dir} ({', '.join(ctx.services) or 'no compose service'}) has no .dockerignore: "
                 f"{len(files)} files, {sum(files.values())} bytes sent",
              f"{ctx.dir}: no .dockerignore", file=ctx.default_ignore_path)
