"""Secret files that a build context sends, and that COPY may put into an image."""

from __future__ import annotations

import posixpath
import re
from typing import Iterable

from engine.artifacts import Category, Severity
from pipelines.docker_optimization.copies import matching, sources
from pipelines.docker_optimization.rules import Hit, rule

SECRET_NAMES = re.compile(
    r"^(\.env(\.(?!example$|sample$|template$|dist$)[\w.-]+)?|id_(rsa|dsa|ecdsa|ed25519)|\.pypirc|\.netrc|\.npmrc"
    r"|credentials(\.json)?|.*\.(pem|key|p12|pfx|jks|keystore))$")


def secret_files(files: Iterable[str]) -> list[str]:
    return sorted(p for p in files if SECRET_NAMES.match(posixpath.basename(p)))


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
    sent = ctx.sent()
    leaked = secret_files(sent)
    if not leaked:
        return
    df = ctx.project.dockerfiles.get(ctx.dockerfile)
    copied = set()
    if df is not None and not df.error:
        for src in sources(df):
            copied.update(matching(sent, src.path))
    for path in leaked:
        full = path if ctx.dir == "." else f"{ctx.dir}/{path}"
        where = "COPY puts it in the image" if path in copied else "sent to the builder, not copied"
        yield Hit(0, f"{full} is in build context {ctx.dir} and not excluded by a .dockerignore: {where}",
                  f"{full} (contents not shown)", file=full)
