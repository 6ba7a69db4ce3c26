"""BuildKit cache mounts: which caches each package manager writes, where a RUN mounts them, and what
defeats a mount (``--no-cache-dir``, a cleanup that empties it, an unlocked apt cache).

The shell text of a RUN is matched with the patterns below, as written (continuations included), so
that the fixes can edit it in place. The cache rules (``rules/cache.py``) explain the decisions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction

# Shell text, as the parser joins it (one line) or as it is written (continued lines).
_GAP = r"(?:(?<=\n)[ \t]*\r?\n|[ \t]|\\[ \t]*\r?\n)"  # blank lines inside a continuation first
W = _GAP + "+"  # whitespace, line continuations included
W0 = _GAP + "*"
AT = r"(?<![^\s;&|(`'\"])(?:[^\s;&|()`'\"]*/)?"  # a command word (at a boundary, maybe with a path)
TOKEN = r"(?:[^\s;&|()<>\\'\"]|\\\S|\"[^\"]*\"|'[^']*')+"  # a word; an unmatched quote ends it
ARGS = "(?:" + W + TOKEN + ")*"
OPTS = "(?:" + W + "-" + TOKEN + ")*"
OR_TRUE = "(?:" + W0 + r"\|\|" + W0 + r"(?:true|:)(?![^\s;&|)]))?"
SEGMENT_REST = re.compile(r"(?:[^;&|()\r\n\\]|\\[ \t]*\r?\n|(?<=\n)[ \t]*\r?\n|\\.)*")
_NOT_VERSION = "(?!" + W + r"(?:-v|--version|-version)(?![^\s;&|)]))"

PIP_INSTALL = re.compile(
    r"(?<!uv )" + AT + r"(?:pip3?(?:\.\d+)?|python3?(?:\.\d+)?" + W + "-m" + W + "pip)" + W + r"install\b"
)
NO_CACHE_DIR = re.compile(r"(?<!\S)--no-cache-dir(?![^\s;&|)])")
NO_CACHE = re.compile(r"(?<!\S)--no-cache(?![^\s;&|)])")
PIP_ENV_INLINE = re.compile(r"(?<![^\s;&|(])(?<!export )PIP_NO_CACHE_DIR=(?:\"[^\"]*\"|'[^']*'|[^\s;&|()]*)")
APT_INSTALL = re.compile(AT + "apt-get" + "(?:" + W + TOKEN + ")*?" + W + r"install\b")
APT_UPDATE = re.compile(AT + "apt(?:-get)?" + "(?:" + W + TOKEN + ")*?" + W + r"update\b")
APT_ANY = re.compile(
    AT
    + "apt(?:-get)?"
    + "(?:"
    + W
    + TOKEN
    + ")*?"
    + W
    + r"(?:install|update|upgrade|dist-upgrade|full-upgrade|build-dep|download|source|reinstall)\b"
)
APK_ADD = re.compile(AT + "apk" + "(?:" + W + TOKEN + ")*?" + W + r"add\b")
APK_UPDATED = re.compile(r"(?<!\S)(?:-U|--update|--update-cache)(?![^\s;&|)])|" + AT + "apk" + OPTS + W + r"update\b")
RM = re.compile(AT + r"rm(?P<args>" + ARGS + ")" + OR_TRUE)
RM_ARG = re.compile(r"(?<![^ \t\n])" + TOKEN)
HOOK = "/etc/apt/apt.conf.d/docker-clean"
HOOK_REMOVED = re.compile(r"\brm\b[^;&|\n]*/etc/apt/apt\.conf\.d/docker-clean\b")
_HOME = re.compile(r"^(?:~|\$HOME|\$\{HOME\})(?=/|$)")


@dataclass(frozen=True)
class Cache:
    """Where a package manager keeps its downloads."""

    dir: str  # for root
    env: tuple[tuple[str, str], ...] = ()  # (variable, suffix): the variable moves it to $variable+suffix
    home: str = ""  # path under another user's home ("": the same for every user)
    locked: bool = False  # needs sharing=locked
    needs: re.Pattern | None = None  # only when the RUN also does this


@dataclass(frozen=True)
class Manager:
    name: str
    code: str
    command: re.Pattern
    caches: tuple[Cache, ...]


PIP = Cache("/root/.cache/pip", (("PIP_CACHE_DIR", ""),), "/.cache/pip")
UV = Cache("/root/.cache/uv", (("UV_CACHE_DIR", ""),), "/.cache/uv")
POETRY = Cache("/root/.cache/pypoetry", (("POETRY_CACHE_DIR", ""),), "/.cache/pypoetry")
NPM = Cache("/root/.npm", (("npm_config_cache", ""), ("NPM_CONFIG_CACHE", "")), "/.npm")
YARN = Cache("/usr/local/share/.cache/yarn", (("YARN_CACHE_FOLDER", ""),), "/.cache/yarn")
PNPM = Cache("/root/.local/share/pnpm/store", (("PNPM_HOME", "/store"),), "/.local/share/pnpm/store")
APT_ARCHIVES = Cache("/var/cache/apt", locked=True)
APT_LISTS = Cache("/var/lib/apt", locked=True, needs=APT_UPDATE)
APK = Cache("/var/cache/apk")
GO_BUILD = Cache("/root/.cache/go-build", (("GOCACHE", ""),), "/.cache/go-build")
GO_MOD = Cache("/go/pkg/mod", (("GOMODCACHE", ""), ("GOPATH", "/pkg/mod")))
CARGO = Cache("/usr/local/cargo/registry", (("CARGO_HOME", "/registry"),))
MAVEN = Cache("/root/.m2", (), "/.m2")
GRADLE = Cache("/root/.gradle", (("GRADLE_USER_HOME", ""),), "/.gradle")

UV_INSTALL = re.compile(AT + "uv" + W + "(?:pip" + W + "(?:install|sync)|sync)" + r"\b")
POETRY_INSTALL = re.compile(AT + "poetry" + W + r"install\b")
_YARN_FLAG = W + r"-{1,2}(?!-)(?!(?:version|help|v|h)\b)[\w-]+(?:=" + TOKEN + ")?"
MANAGERS: tuple[Manager, ...] = (
    Manager("pip", "CA001", PIP_INSTALL, (PIP,)),
    Manager("uv", "CA003", UV_INSTALL, (UV,)),
    Manager("poetry", "CA003", POETRY_INSTALL, (POETRY,)),
    Manager("npm", "CA003", re.compile(AT + "npm" + OPTS + W + r"(?:ci|install|i|add)\b"), (NPM,)),
    Manager(
        "yarn",
        "CA003",
        re.compile(
            AT
            + "yarn(?:"
            + W
            + "(?:global"
            + W
            + ")?(?:install|add)"
            + r"\b|(?:"
            + _YARN_FLAG
            + ")*(?="
            + W0
            + r"(?:$|&&|\|\||;|\)|\r?\n)))"
        ),
        (YARN,),
    ),
    Manager("pnpm", "CA003", re.compile(AT + "pnpm" + W + r"(?:install|i|add|fetch)\b"), (PNPM,)),
    Manager("apt", "CA003", APT_INSTALL, (APT_ARCHIVES, APT_LISTS)),
    Manager("apk", "CA003", APK_ADD, (APK,)),
    Manager("go", "CA003", re.compile(AT + "go" + W + r"(?:build|install|test)\b"), (GO_BUILD, GO_MOD)),
    Manager("go", "CA003", re.compile(AT + "go" + W + "mod" + W + r"download\b"), (GO_MOD,)),
    Manager("cargo", "CA003", re.compile(AT + "cargo" + W + r"(?:build|install|fetch|test)\b"), (CARGO,)),
    Manager("maven", "CA003", re.compile(AT + r"mvnw?(?![^\s;&|)])" + _NOT_VERSION), (MAVEN,)),
    Manager("gradle", "CA003", re.compile(AT + r"gradlew?(?![^\s;&|)])" + _NOT_VERSION), (GRADLE,)),
)


def _cleaner(*words: str) -> re.Pattern:
    return re.compile(AT + W.join(words) + r"(?![^\s;&|)])" + ARGS + OR_TRUE)


_PIP_WORD = r"(?:pip3?(?:\.\d+)?|python3?(?:\.\d+)?" + W + "-m" + W + "pip)"
# (command that empties a cache, the cache, a flag it needs to do so, what to call it)
CLEANERS: tuple[tuple[re.Pattern, Cache, re.Pattern | None, str], ...] = (
    (_cleaner("npm", "cache", "clean"), NPM, None, "npm cache clean"),
    (_cleaner("yarn", "cache", "clean"), YARN, None, "yarn cache clean"),
    (_cleaner(_PIP_WORD, "cache", "purge"), PIP, None, "pip cache purge"),
    (_cleaner("uv", "cache", "clean"), UV, None, "uv cache clean"),
    (_cleaner("poetry", "cache", "clear"), POETRY, None, "poetry cache clear"),
    (
        re.compile(AT + "apt(?:-get)?" + OPTS + W + r"clean(?![^\s;&|)])" + ARGS + OR_TRUE),
        APT_ARCHIVES,
        None,
        "apt-get clean",
    ),
    (_cleaner("apk", "cache", "(?:clean|purge)"), APK, None, "apk cache clean"),
    (_cleaner("go", "clean"), GO_BUILD, re.compile(r"(?<!\S)-cache(?!\S)"), "go clean -cache"),
    (_cleaner("go", "clean"), GO_MOD, re.compile(r"(?<!\S)-modcache(?!\S)"), "go clean -modcache"),
)
# (manager command, its cache, the flag that bypasses the cache)
BYPASS_FLAGS: tuple[tuple[re.Pattern, Cache, str], ...] = (
    (APK_ADD, APK, "apk"),
    (UV_INSTALL, UV, "uv"),
    (POETRY_INSTALL, POETRY, "poetry"),
)


@dataclass(frozen=True)
class Run:
    """A RUN as the cache rules see it: what its shell runs, and the stage around it."""

    ins: Instruction
    text: str  # command line, plus a heredoc's script
    env: dict[str, tuple[str, Instruction]]  # ENV in effect: name -> (value, the ENV)
    root: bool
    hook_removed: bool  # docker-clean removed by an earlier RUN of the stage

    @property
    def heredoc(self) -> bool:
        return "\n" in self.ins.original


@dataclass(frozen=True)
class Defeat:
    """Something in a RUN that defeats one of its cache mounts; the span is in the text it was found in."""

    code: str
    message: str
    start: int = -1
    end: int = -1
    action: str = "command"  # command (drop it and its && or ;) | token (drop it) | replace | env (an ENV's key)
    replacement: str = ""
    env: Instruction | None = None


@dataclass(frozen=True)
class Problem:
    """An apt cache mount that is unlocked (flag = its --mount text) or emptied by docker-clean (flag = "")."""

    message: str
    flag: str = ""


def script(ins: Instruction) -> str:
    """What the RUN's shell executes: the command line, plus the body of its heredocs."""
    if ins.json:
        return " ".join(ins.value)
    body = ins.original.split("\n", 1)[1] if "\n" in ins.original else ""
    return ins.command + ("\n" + body if body else "")


def preceding(df: Dockerfile, ins: Instruction) -> list[Instruction]:
    """The instructions before ``ins`` in its stage and in the stages it is built FROM, earliest first."""
    out: list[Instruction] = []
    stage, limit, seen = ins.stage, ins.start_line, set()
    while stage >= 0 and stage not in seen:
        seen.add(stage)
        out = [i for i in df.instructions if i.stage == stage and i.start_line < limit] + out
        parent = df.parent(stage)
        stage = -1 if parent is None else parent
        limit = 1 << 30
    return out


def _before(df: Dockerfile) -> dict[int, tuple[dict[str, tuple[str, Instruction]], bool]]:
    """For each instruction's line: the ENV in effect (``Dockerfile.env_at``) and whether a RUN removed docker-clean.

    One pass per file (stages in order, each starting from the end state of the
    stage it is built FROM), as ``preceding`` sees them.
    """
    found = df.memo.get("run_before")
    if found is None:
        found = {}
        ends: dict[int, bool] = {}
        for stage in sorted({i.stage for i in df.instructions}):
            hook = False
            if stage >= 0:
                parent = df.parent(stage)
                if parent in ends:
                    hook = ends[parent]
            for other in df.in_stage(stage):
                found[other.start_line] = (df.env_at(other), hook)
                if stage < 0:
                    continue  # preceding() gives nothing before the first FROM
                if other.cmd == "RUN" and not hook and HOOK_REMOVED.search(script(other)):
                    hook = True
            ends[stage] = hook
        df.memo["run_before"] = found
    return found


def run_of(df: Dockerfile, ins: Instruction) -> Run:
    before = _before(df).get(ins.start_line)
    if before is None:  # not one of df's instructions: walk as before
        env: dict[str, tuple[str, Instruction]] = {}
        hook_removed = False
        for other in preceding(df, ins):
            if other.cmd == "ENV":
                env.update({k: (v, other) for k, v in zip(other.value[::2], other.value[1::2])})
            elif other.cmd == "RUN" and HOOK_REMOVED.search(script(other)):
                hook_removed = True
    else:
        env, hook_removed = dict(before[0]), before[1]
    return Run(ins, script(ins), env, df.user_at(ins) in ("root", "0"), hook_removed)


def cache_mounts(ins: Instruction) -> list[tuple[str, dict[str, str]]]:
    """(flag text, options) of the RUN's ``type=cache`` mounts."""
    out = []
    for flag in ins.flags:
        if flag.startswith("--mount="):
            opts = dict(re.findall(r"([a-z-]+)=([^,]*)", flag[len("--mount=") :]))
            if opts.get("type") == "cache":
                out.append((flag, opts))
    return out


def target_of(opts: dict[str, str]) -> str:
    return opts.get("target") or opts.get("dst") or opts.get("destination") or ""


def cache_dir(cache: Cache, run: Run) -> str | None:
    """The cache's directory for this RUN; ``~/...`` for another user's home; None when we can't tell."""
    for var, suffix in cache.env:
        if var in run.env:
            value = run.env[var][0].strip("\"'")
            if "$" in value or not value.startswith("/"):
                return None
            return value.rstrip("/") + suffix
    if run.root or not cache.home:
        return cache.dir
    return "~" + cache.home


def covers(target: str, path: str) -> bool:
    """A cache mount on ``target`` holds ``path`` (a path under another user's home: ``~/...``)."""
    t = target.rstrip("/")
    if not t:
        return False
    if path.startswith("~"):
        parts = path[1:].strip("/").split("/")
        return any(t.endswith("/" + "/".join(parts[:k])) for k in range(1, len(parts) + 1))
    return path == t or path.startswith(t + "/")


def _covered(cache: Cache, run: Run, targets: list[str]) -> str | None:
    """The mount target that holds ``cache`` for this RUN, if any."""
    path = cache_dir(cache, run)
    return next((t for t in targets if path and covers(t, path)), None)


# Managers matched by their bare name (no verb after it): as an argument (`chmod +x ./gradlew`) it runs nothing.
_BARE = frozenset({"maven", "gradle"})
_SEPARATOR = re.compile(r"(?:&&|\|\||[;|&(`\n]|\$\()\s*(?:(?:then|do|else|exec|sudo|env|time|nice|nohup)\s+)*")
_PREFIX_WORD = re.compile(r"\s*(?:[A-Za-z_][A-Za-z0-9_]*=\S*|sudo|env|time|nice|nohup|exec|-\S+)\s+")


def _command_position(text: str, start: int) -> bool:
    """Does ``start`` begin a simple command (after a separator, variable assignments and `sudo`/`env`)?"""
    before = text[:start].replace("\\\n", " ")
    seps = list(_SEPARATOR.finditer(before))
    rest = before[seps[-1].end() if seps else 0 :]
    while rest.strip():
        m = _PREFIX_WORD.match(rest)
        if not m:
            return False
        rest = rest[m.end() :]
    return True


def missing(run: Run, targets: list[str]) -> list[tuple[Manager, list[tuple[Cache, str]]]]:
    """Per package manager the RUN uses: the caches (and their paths) no mount in ``targets`` holds."""
    found: dict[str, tuple[Manager, list[tuple[Cache, str]]]] = {}
    for manager in MANAGERS:
        if not any(
            manager.name not in _BARE or _command_position(run.text, m.start())
            for m in manager.command.finditer(run.text)
        ):
            continue
        _, caches = found.setdefault(manager.name, (manager, []))
        for cache in manager.caches:
            if cache.needs is not None and not cache.needs.search(run.text):
                continue
            path = cache_dir(cache, run)
            if path and not any(covers(t, path) for t in targets) and (cache, path) not in caches:
                caches.append((cache, path))
    return [(m, caches) for m, caches in found.values() if caches]


def segments(pattern: re.Pattern, text: str, pos: int = 0) -> Iterable[tuple[int, int]]:
    """(start, end) of each simple command that ``pattern`` starts, up to the next ;, &&, ||, | or newline."""
    for m in pattern.finditer(text, pos):
        rest = SEGMENT_REST.match(text, m.end())
        assert rest is not None  # it matches the empty string at worst
        yield m.start(), rest.end()


def _rm_related(arg: str, target: str) -> bool:
    """``rm arg`` deletes what a cache mount on ``target`` holds: the target, something in it, or a parent."""
    path = arg.rstrip("/") or "/"
    if path.endswith("/*"):
        path = path[:-2] or "/"
    if path == "/" or not path.startswith("/"):
        return False
    t = target.rstrip("/")
    ancestors = [t] + [t[:i] for i in range(len(t) - 1, 0, -1) if t[i] == "/"]
    return path.startswith(t + "/") or any(fnmatchcase(a, path) for a in ancestors)


def defeats(run: Run, text: str, pos: int, targets: list[str]) -> list[Defeat]:
    """What in ``text`` (from ``pos``) defeats the cache mounts on ``targets``; spans index ``text``."""
    out: list[Defeat] = []
    pip_target = _covered(PIP, run, targets)
    if pip_target and PIP_INSTALL.search(text, pos):
        for start, end in segments(PIP_INSTALL, text, pos):
            for m in NO_CACHE_DIR.finditer(text, start, end):
                out.append(
                    Defeat(
                        "CA002",
                        f"--no-cache-dir beside the pip cache mount on {pip_target}: the mount caches nothing",
                        m.start(),
                        m.end(),
                        "token",
                    )
                )
        for m in PIP_ENV_INLINE.finditer(text, pos):
            out.append(
                Defeat(
                    "CA004",
                    f"{m.group()} turns pip's cache off (whatever the value) beside the cache mount on {pip_target}",
                    m.start(),
                    m.end(),
                    "token",
                )
            )
        if "PIP_NO_CACHE_DIR" in run.env:
            value, env = run.env["PIP_NO_CACHE_DIR"]
            out.append(
                Defeat(
                    "CA004",
                    f"PIP_NO_CACHE_DIR={value} (ENV at line {env.start_line}) turns pip's cache "
                    f"off (whatever the value) beside the cache mount on {pip_target}",
                    action="env",
                    env=env,
                )
            )
    for pattern, cache, needs, label in CLEANERS:
        target = _covered(cache, run, targets)
        if target:
            for m in pattern.finditer(text, pos):
                if needs is None or needs.search(m.group()):
                    out.append(
                        Defeat(
                            "CA004",
                            f"`{label}` empties the cache mount on {target}: the next build downloads everything again",
                            m.start(),
                            m.end(),
                        )
                    )
    for pattern, cache, name in BYPASS_FLAGS:
        target = _covered(cache, run, targets)
        for start, end in segments(pattern, text, pos) if target else ():
            for m in NO_CACHE.finditer(text, start, end):
                replace = name == "apk" and not APK_UPDATED.search(text, pos)
                out.append(
                    Defeat(
                        "CA004",
                        f"{name} --no-cache beside the cache mount on {target}: {name} never reads or fills it",
                        m.start(),
                        m.end(),
                        "replace" if replace else "token",
                        "--update-cache" if replace else "",
                    )
                )
    for m in RM.finditer(text, pos):
        args = [
            (a.start() + m.start("args"), a.end() + m.start("args"), a.group())
            for a in RM_ARG.finditer(m.group("args"))
        ]
        paths = [(s, e, a) for s, e, a in args if not a.startswith("-")]
        hits = []
        for s, e, arg in paths:
            expanded = _HOME.sub("/root", arg.strip("\"'")) if run.root else arg.strip("\"'")
            target = next((t for t in targets if _rm_related(expanded, t)), None)
            if target:
                hits.append(
                    (
                        s,
                        e,
                        f"`rm {arg}` deletes what the cache mount on {target} keeps: the next build downloads it again",
                    )
                )
        if hits and len(hits) == len(paths):
            out += [Defeat("CA004", "; ".join(h[2] for h in hits), m.start(), m.end())]
        else:
            out += [Defeat("CA004", message, s, e, "token") for s, e, message in hits]
    return out


def apt_problems(run: Run, mounts: list[tuple[str, dict[str, str]]]) -> list[Problem]:
    """apt cache mounts without sharing=locked, and a /var/cache/apt mount docker-clean keeps empty."""
    if not APT_ANY.search(run.text):
        return []
    out = []
    for flag, opts in mounts:
        target = target_of(opts)
        if (covers(target, APT_ARCHIVES.dir) or covers(target, APT_LISTS.dir)) and opts.get("sharing") != "locked":
            out.append(
                Problem(
                    f"apt cache mount on {target} without sharing=locked: concurrent builds sharing it "
                    "corrupt apt's lock and cache",
                    flag,
                )
            )
    archives = next((target_of(o) for _, o in mounts if covers(target_of(o), APT_ARCHIVES.dir)), None)
    if archives and APT_INSTALL.search(run.text) and not run.hook_removed and not HOOK_REMOVED.search(run.text):
        out.append(
            Problem(
                f"cache mount on {archives} while {HOOK} is active: the hook deletes every downloaded "
                ".deb, so the mount stays empty"
            )
        )
    return out


def cache_runs(df: Dockerfile) -> Iterable[Run]:
    """Every RUN of the Dockerfile, read for its caches."""
    return (run_of(df, i) for i in df.of("RUN"))
