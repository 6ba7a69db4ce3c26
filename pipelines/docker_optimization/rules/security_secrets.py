"""Security rules SE002 and SE006: secrets written into build arguments, ENV and compose files, and secret
files that a build context sends and that COPY may put into an image."""

from __future__ import annotations

import re
from collections.abc import Iterable

from agent_pipelines.engine.finding import Category, Severity
from agent_pipelines.pipelines.docker_optimization.model.copies import names, sources
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
from agent_pipelines.pipelines.docker_optimization.model.project import relative, within
from agent_pipelines.pipelines.docker_optimization.rules import Hit, per_file, rule

SECRET_NAMES = re.compile(
    r"^(\.env(\.[\w.-]+)?|id_(rsa|dsa|ecdsa|ed25519)|\.pypirc|\.netrc|\.npmrc"
    r"|credentials(\.json)?|.*\.(pem|key|p12|pfx|jks|keystore))$"
)
# A name part that makes the file a template to copy and fill in, not the filled-in file:
# .env.example, .env.local.template, .env.dist, .env.production.sample.
TEMPLATE_PARTS = frozenset(
    {"example", "examples", "sample", "samples", "template", "templates", "tmpl", "tpl", "dist", "skel", "stub"}
)
# PEM files that hold a certificate (public by design), not a private key.
PUBLIC_PEM = re.compile(
    r"(^|[._-])(cert|certificate|fullchain|chain|ca|cacert|ca-bundle|bundle|pub|public)"
    r"([._-]|$)",
    re.IGNORECASE,
)


def is_secret_file(name: str) -> bool:
    """Does a file name look like a secret: a filled-in .env, a private key, a credentials file?"""
    if not SECRET_NAMES.match(name):
        return False
    if TEMPLATE_PARTS & set(re.split(r"[._-]", name.lower())):
        return False
    return not (name.endswith(".pem") and PUBLIC_PEM.search(name[:-4]))


def secret_files(files: Iterable[str]) -> _SecretFiles:
    return _SecretFiles(sorted(p for p in files if is_secret_file(p.rpartition("/")[2])))


class _SecretFiles(list):
    """The secret-looking paths, kept (``Project.names_memo``) across added and removed files."""

    def follow(self, old: list[str], new: list[str], added: list[str], removed: list[str]) -> _SecretFiles:
        gone = set(removed)
        return secret_files([p for p in self if p not in gone] + added)


class _KeptVerdicts(dict):
    """Answers kept across commits (``Project.names_memo``), each with what it was made from; the caller
    uses one only while that is the same, whatever files came or went elsewhere. SE006's per (context
    directory, Dockerfile): the parsed Dockerfile (an unchanged one is the same object: ``Project.updated``
    keeps it), the ignore patterns and the secret files there, and for each file sent, whether a COPY
    names it. ``public_env``'s per .env file: its text and the verdict."""

    def follow(self, old: list[str], new: list[str], added: list[str], removed: list[str]) -> _KeptVerdicts:
        return self


class _KeptInside(tuple):
    """(the candidate secret files, context directory -> those under it), kept (``Project.names_memo``) while
    the candidates are the same."""

    def __new__(cls, candidates: list[str]) -> _KeptInside:
        return super().__new__(cls, (list(candidates), {}))

    def follow(self, old: list[str], new: list[str], added: list[str], removed: list[str]) -> _KeptInside:
        return self


# Variables frameworks inline into the client bundle at build time: public by design, and the build needs them.
PUBLIC_PREFIXES = (
    "EXPO_PUBLIC_",
    "NEXT_PUBLIC_",
    "VITE_",
    "REACT_APP_",
    "NUXT_PUBLIC_",
    "PUBLIC_",
    "GATSBY_",
    "VUE_APP_",
)
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def public_env(project, path: str) -> bool:
    """Is ``path`` a .env file whose every variable is public by design (`EXPO_PUBLIC_*`, `VITE_*`...)?"""
    if not path.rpartition("/")[2].startswith(".env"):
        return False
    text = project.text(path) or ""
    kept = project.names_memo.setdefault("public_env", _KeptVerdicts())  # path -> (text, verdict)
    was = kept.get(path)
    if was is None or was[0] != text:
        keys = [m.group(1) for m in map(_ENV_LINE.match, text.splitlines()) if m]
        was = kept[path] = (text, bool(keys) and all(k.startswith(PUBLIC_PREFIXES) for k in keys))
    return was[1]


@rule("SE006", "secret-file-in-build-context", Category.security, Severity.error, "project")
def secret_file_in_build_context(project) -> Iterable[Hit]:
    """A secret-looking file (.env, private keys, .npmrc, .pypirc) is sent with a build context.

    One finding per file, naming every context that sends it. Templates are
    not secrets: a name with a part `example`, `sample`, `template`,
    `tmpl`, `tpl`, `dist` (`.env.example`, `.env.local.template`,
    `.env.dist`, `.env.production.sample`) is skipped, and so are certificates
    (`cert.pem`, `fullchain.pem`, `ca.pem`), which are public, and a .env
    whose every variable is one a framework puts in the client bundle
    (`EXPO_PUBLIC_*`, `NEXT_PUBLIC_*`, `VITE_*`, `REACT_APP_*`...). `.env`,
    `.env.local`, `.env.production` and private keys are reported.

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
    senders: dict[str, list[str]] = {}  # secret file -> context dirs that send it
    copied: dict[str, list[str]] = {}  # secret file -> Dockerfiles whose COPY puts it in the image
    seen = set()
    if "secret_files" not in project.names_memo:  # kept across incremental updates (see Project.names_memo)
        project.names_memo["secret_files"] = secret_files(project.files)
    candidates = [p for p in project.names_memo["secret_files"] if not public_env(project, p)]
    kept = project.names_memo.setdefault("secret_file_verdicts", _KeptVerdicts())
    # context directory -> the candidates under it, kept across updates while the candidates are the same
    was_inside = project.names_memo.get("secret_files_by_dir")
    if was_inside is None or was_inside[0] != candidates:
        was_inside = project.names_memo["secret_files_by_dir"] = _KeptInside(candidates)
    by_dir: dict[str, list[str]] = was_inside[1]
    for ctx in project.contexts:
        inside = by_dir.get(ctx.dir)
        if inside is None:
            inside = by_dir[ctx.dir] = [p for p in candidates if within(p, ctx.dir)]
        if not inside or (ctx.dir, ctx.dockerfile) in seen:
            continue
        seen.add((ctx.dir, ctx.dockerfile))
        df = project.dockerfiles.get(ctx.dockerfile)
        ignore = ctx.ignore
        was = kept.get((ctx.dir, ctx.dockerfile))
        if was is not None and was[0] is df and was[1] == ignore.key and was[2] == inside:
            verdicts = was[3]
        else:
            copying = [src.path for src in sources(df)] if df is not None and not df.error else []
            verdicts = [
                (full, any(names(src, path) for src in copying))
                for full in inside
                if not ignore.excluded(path := relative(full, ctx.dir))
            ]
            kept[(ctx.dir, ctx.dockerfile)] = (df, ignore.key, inside, verdicts)
        for full, copies in verdicts:
            if ctx.dir not in senders.setdefault(full, []):
                senders[full].append(ctx.dir)
            if copies and ctx.dockerfile not in copied.setdefault(full, []):
                copied[full].append(ctx.dockerfile)
    for full, dirs in sorted(senders.items()):
        contexts = ", ".join(dirs)
        where = (
            f"COPY puts it in the image ({', '.join(copied[full])})"
            if copied.get(full)
            else "sent to the builder, not copied"
        )
        yield Hit(
            0,
            f"{full} is in build context{'s' if len(dirs) > 1 else ''} {contexts} and not excluded by a "
            f".dockerignore: {where}",
            f"{full} (contents not shown)",
            file=full,
        )


# Names that hold secrets: *_KEY, *_SECRET, *_TOKEN, *_PASSWORD, *_CREDENTIALS (not public keys, GPG fingerprints).
SECRET_NAME = re.compile(r"(?i)(?:^|_)(?:(?:API|ACCESS|SECRET|PRIVATE)?KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIALS?)$")
NOT_SECRET = re.compile(r"(?i)GPG|PGP|PUBLIC|PUBLISHABLE|PUB_?KEY")
# `${VAR}`, `$VAR`, `${VAR:?err}`: a reference, not a literal. A default (`${VAR:-x}`) is a literal.
REFERENCE = re.compile(r"^\$(?:\{\w+(?::?[?+][^}]*)?\}|\w+)$")
INTERPOLATION_DEFAULT = re.compile(r"\$\{\w+:?-([^}]*)\}")


# -- SE002 -------------------------------------------------------------------
def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) and not NOT_SECRET.search(name)


def literal(value: object) -> bool:
    """A value written in the file: not empty, not only a ``$VAR`` reference (a ``${VAR:-default}`` counts)."""
    if value is None or isinstance(value, bool):
        return False
    text = str(value).strip().strip("\"'")
    if not text or REFERENCE.match(text):
        return False
    if "$" not in text:
        return True
    default = INTERPOLATION_DEFAULT.search(text)
    return bool(default and default.group(1).strip("\"'"))


def dockerfile_secrets(df: Dockerfile) -> Iterable[Hit]:
    for ins in df.of("ARG", "ENV"):
        if ins.cmd == "ARG":
            pairs = [item.partition("=")[::2] for item in ins.value if "=" in item]
        else:
            pairs = list(zip(ins.value[::2], ins.value[1::2]))
        for name, value in pairs:
            if is_secret_name(name) and literal(value):
                kind = "build argument default" if ins.cmd == "ARG" else "environment variable"
                yield Hit(
                    ins.start_line,
                    f"{ins.cmd} {name} has a literal value: the {kind} is stored in the image "
                    "(docker history / inspect shows it to anyone who pulls it)",
                    f"{ins.cmd} {name}=***",
                    ins.end_line,
                    file=df.path,
                )


def _line(mapping, key, fallback: int) -> int:
    try:
        return mapping.lc.key(key)[0] + 1
    except (AttributeError, KeyError, TypeError):
        return fallback


def _item_line(seq, index: int, fallback: int) -> int:
    try:
        return seq.lc.item(index)[0] + 1
    except (AttributeError, KeyError, TypeError, IndexError):
        return fallback


def _entries(block, fallback: int) -> list[tuple[str, object, int]]:
    """(name, value, line) of a compose mapping or KEY=value list (environment, build args)."""
    if isinstance(block, dict):
        return [(str(k), v, _line(block, k, fallback)) for k, v in block.items()]
    if isinstance(block, list):
        return [
            (
                str(item).partition("=")[0],
                str(item).partition("=")[2] if "=" in str(item) else None,
                _item_line(block, i, fallback),
            )
            for i, item in enumerate(block)
        ]
    return []


def compose_secrets(project) -> Iterable[Hit]:
    for compose in project.composes:
        yield from compose_file_secrets(compose)


def compose_file_secrets(compose) -> Iterable[Hit]:
    for name, svc in compose.services.items():
        if not isinstance(svc, dict):
            continue
        start = compose.line_of(name)
        build = got if isinstance(got := svc.get("build"), dict) else {}
        blocks = (("environment", svc.get("environment")), ("build args", build.get("args")))
        for where, block in blocks:
            for key, value, line in _entries(block, start):
                if is_secret_name(key) and literal(value):
                    shown = "a default" if "$" in str(value) else "a literal value"
                    yield Hit(
                        line,
                        f"service {name}: {where} {key} has {shown} in {compose.path}, committed with the repository",
                        f"{name}: {key}=***",
                        file=compose.path,
                    )


@rule(
    "SE002",
    "secret-in-build-or-compose",
    Category.security,
    Severity.warning,
    "project",
    reads=("dockerfiles", "composes"),
)
def secret_in_build_or_compose(project) -> Iterable[Hit]:
    """A secret-looking variable (`*_KEY`, `*_SECRET`, `*_TOKEN`, `*_PASSWORD`) has a literal value.

    Looks at Dockerfile ARG defaults and ENV values, and at compose
    `environment` entries and `build.args`, including interpolation
    defaults (`${DB_PASSWORD:-hunter2}`). Values that only reference a
    variable (`$TOKEN`, `${TOKEN}`) are fine. `*_CREDENTIALS` counts too;
    public and publishable keys and GPG key fingerprints don't. The finding
    never shows the value.

    Why: an ARG default or ENV value is stored in the image's config and
    history; anyone who can pull the image can read it. A value in a
    compose file is in the repository, its history and every clone.

    Example:
        ENV API_TOKEN=s3cr3t

    Use instead:
        RUN --mount=type=secret,id=api_token,env=API_TOKEN ./configure
        # compose: environment: {API_TOKEN: ${API_TOKEN}} with the value in an untracked .env
    """
    parsed = [df for df in project.dockerfiles.values() if not df.error]
    yield from per_file(project, "SE002 dockerfiles", parsed, dockerfile_secrets)  # each file's kept while unchanged
    yield from per_file(project, "SE002 composes", project.composes, compose_file_secrets)
