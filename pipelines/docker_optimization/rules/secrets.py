"""Secret files that a build context sends, and that COPY may put into an image."""

from __future__ import annotations

import re
from typing import Iterable

from engine.finding import Category, Severity
from pipelines.docker_optimization.copies import names, sources
from pipelines.docker_optimization.project import relative, within
from pipelines.docker_optimization.rules import Hit, rule

SECRET_NAMES = re.compile(
    r"^(\.env(\.(?!example$|sample$|template$|dist$)[\w.-]+)?|id_(rsa|dsa|ecdsa|ed25519)|\.pypirc|\.netrc|\.npmrc"
    r"|credentials(\.json)?|.*\.(pem|key|p12|pfx|jks|keystore))$")


def secret_files(files: Iterable[str]) -> list[str]:
    return _SecretFiles(sorted(p for p in files if SECRET_NAMES.match(p.rpartition("/")[2])))


class _SecretFiles(list):
    """The secret-looking paths, kept (``Project.names_memo``) across added and removed files."""

    def follow(self, old: list[str], new: list[str], added: list[str], removed: list[str]) -> _SecretFiles:
        gone = set(removed)
        return secret_files([p for p in self if p not in gone] + added)


@rule("SE006", "secret-file-in-build-context", Category.security, Severity.error, "context")
def secret_file_in_build_context(ctx) -> Iterable[Hit]:
    """A secret-looking file (.env, private keys, .npmrc, .pypirc) is sent with the build context.

    Why: the classic builder uploads it to the engine on every build, and a
    broad `COPY . .` bakes it into an image layer, where anyone who can pull
    the image can read it, even if a later step deletes it.

    Example:
        services/billing/.env        (STRIPE_KEY=...)
        COPY . .

    Use instead:
        a .dockerignore entry (`**/.env`), and secrets passed at build time with
        `RUN --mount=type=secret,id=stripe` or at run time through the environment.
    """
    project = ctx.project
    if "secret_files" not in project.names_memo:  # one pass over the repository, not one per context
        project.names_memo["secret_files"] = secret_files(project.files)
    leaked = [relative(p, ctx.dir) for p in project.names_memo["secret_files"] if within(p, ctx.dir)]
    leaked = [p for p in leaked if not ctx.ignore.excluded(p)]
    if not leaked:
        return
    df = project.dockerfiles.get(ctx.dockerfile)
    copying = [src.path for src in sources(df)] if df is not None and not df.error else []
    for path in leaked:
        full = path if ctx.dir == "." else f"{ctx.dir}/{path}"
        where = ("COPY puts it in the image" if any(names(src, path) for src in copying)
                 else "sent to the builder, not copied")
        yield Hit(0, f"{full} is in build context {ctx.dir} and not excluded by a .dockerignore: {where}",
                  f"{full} (contents not shown)", file=full)
