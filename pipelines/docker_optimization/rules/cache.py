"""Cache rules CA001-CA005: BuildKit cache mounts that are missing, or present but defeated; with their fixes.

What a RUN's package managers cache, and what its mounts cover or defeat, is ``model/cache_mounts.py``.

Decisions, so the rules, the fixes and the size family agree:

- One rule per concern, not one per package manager (as ruff does): CA001 is
  pip (kept from the first release), CA003 every other manager, and each hit's
  message names the manager and the exact mount targets that are missing.
- A cache directory counts as mounted when a ``type=cache`` mount targets it or
  one of its parents. Variables set by ``ENV`` in the stage (or the stages it
  is built FROM) move a directory: PIP_CACHE_DIR, UV_CACHE_DIR,
  POETRY_CACHE_DIR, npm_config_cache, YARN_CACHE_FOLDER, PNPM_HOME (store under
  it), GOCACHE, GOMODCACHE/GOPATH, CARGO_HOME, GRADLE_USER_HOME. A value we
  can't resolve (``$VAR`` in it) means we don't judge that cache. For a RUN
  that runs as another user, home directories are that user's: any cache mount
  ending in the home-relative path (``.../.npm``) counts.
- apt needs /var/cache/apt (downloaded .debs) always, and /var/lib/apt (the
  lists) only when the same RUN runs ``apt-get update``: mounted over lists an
  earlier RUN fetched, an empty cache would hide them. Both with
  ``sharing=locked``: apt holds locks in both and concurrent builds sharing the
  cache corrupt it. Only ``apt-get`` is checked: the ``apt`` binary deletes
  downloaded .debs itself (Keep-Downloaded-Packages is false for it).
- Debian and Ubuntu images ship /etc/apt/apt.conf.d/docker-clean, a hook that
  deletes downloaded .debs after every install, so a /var/cache/apt mount stays
  empty until the hook is removed by this RUN or an earlier one of the stage.
- With a cache mount, deleting the cache from the same RUN defeats it (CA004):
  ``npm cache clean``, ``yarn cache clean``, ``pip cache purge``, ``uv cache
  clean``, ``poetry cache clear``, ``apt-get clean``, ``apk cache clean``,
  ``go clean -cache/-modcache``, and ``rm`` of the mounted directory, of
  anything in it, or of a parent. ``rm -rf /var/lib/apt/lists/*`` beside a
  /var/lib/apt mount is one of those: the lists live in the mount, not in the
  image, so deleting them saves no image bytes (the size family's SZ006 does not
  fire there) and makes the next ``apt-get update`` download them again.
- Flags and variables that bypass the cache are defeats too: ``--no-cache-dir``
  for pip (CA002), and (CA004) ``apk --no-cache``, ``uv --no-cache``, ``poetry
  --no-cache``, and PIP_NO_CACHE_DIR set by ``ENV`` or on the command line.
  PIP_NO_CACHE_DIR disables the cache for *any* valid boolean value, ``0``,
  ``false`` and ``off`` included: old pips read it inverted and pip >= 19 keeps
  "any value disables" for compatibility, so the value is not looked at.
- A RUN written as a heredoc (``RUN <<EOF``) is checked on its script as well
  as its command line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from agent_pipelines.engine.domain import AlreadyResolved, Declined, FixError
from agent_pipelines.engine.finding import Applicability, Category, Severity
from agent_pipelines.pipelines.docker_optimization.fixes import dockerfile_of
from agent_pipelines.pipelines.docker_optimization.fixes.edit import replace_lines
from agent_pipelines.pipelines.docker_optimization.model.cache_mounts import (
    APK,
    APK_ADD,
    APK_UPDATED,
    HOOK,
    PIP,
    PIP_INSTALL,
    W0,
    Cache,
    Defeat,
    Run,
    apt_problems,
    cache_dir,
    cache_mounts,
    cache_runs,
    covers,
    defeats,
    missing,
    preceding,
    run_of,
    target_of,
)
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.rules import Fix, Hit, load_all, rule

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Design, Task

CACHE_MOUNTS_FIX = Fix("cache-mounts")
CACHE_REPAIR_FIX = Fix("cache-repair")


def mount_targets(run: Run) -> list[str]:
    return [target_of(o) for _, o in cache_mounts(run.ins)]


def _missing_hits(df: Dockerfile, code: str) -> Iterable[Hit]:
    for run in cache_runs(df):
        for manager, caches in missing(run, mount_targets(run)):
            if manager.code == code:
                where = ", ".join(path for _, path in caches)
                yield Hit(
                    run.ins.start_line,
                    f"{manager.name} without a cache mount on {where}: packages are downloaded again on every rebuild",
                    run.ins.original,
                    run.ins.end_line,
                )


def _defeat_hits(df: Dockerfile, code: str) -> Iterable[Hit]:
    for run in cache_runs(df):
        for message in dict.fromkeys(
            d.message for d in defeats(run, run.text, 0, mount_targets(run)) if d.code == code
        ):
            yield Hit(run.ins.start_line, message, run.ins.original, run.ins.end_line)


@rule(
    "CA001",
    "pip-install-without-cache-mount",
    Category.performance,
    Severity.warning,
    "dockerfile",
    fix=CACHE_MOUNTS_FIX,
    safety=Applicability.safe,
    phase="dockerfiles",
)
def pip_install_without_cache_mount(df: Dockerfile) -> Iterable[Hit]:
    """`pip install` runs without a BuildKit cache mount for pip's cache.

    Why: every time the layer is rebuilt (any change to the files copied before
    it), pip downloads and builds every wheel again. A cache mount keeps pip's
    cache on the builder between builds without putting it in the image.

    Fix: adds the mount (for a RUN that runs as root; other users' caches
    live elsewhere) and drops what would defeat it (`--no-cache-dir`, an ENV
    PIP_NO_CACHE_DIR once every pip install it reaches has a mount).

    Example:
        RUN pip install -r requirements.txt

    Use instead:
        RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt

    Fix safety: safe. A cache mount is not part of the image: the same
    install commands run and install the same packages (pip checks what it
    takes from its cache); only the download cache moves out of the layer.
    """
    return _missing_hits(df, "CA001")


@rule(
    "CA002",
    "cache-mount-defeated",
    Category.performance,
    Severity.warning,
    "dockerfile",
    fix=CACHE_REPAIR_FIX,
    safety=Applicability.safe,
    phase="dockerfiles",
)
def cache_mount_defeated(df: Dockerfile) -> Iterable[Hit]:
    """A RUN has a pip cache mount and also `--no-cache-dir`, so the mount caches nothing.

    Why: `--no-cache-dir` tells pip not to read or write its cache. Beside a
    cache mount it silently turns the optimization off: builds look cached
    in the Dockerfile and download everything every time.

    Fix: drops `--no-cache-dir` (and a line that held only it).

    Example:
        RUN --mount=type=cache,target=/root/.cache/pip pip install --no-cache-dir -r requirements.txt

    Use instead:
        RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt

    Fix safety: safe: the packages installed stay the same; `--no-cache-dir`
    only kept pip from using the cache mount that is already there.
    """
    return _defeat_hits(df, "CA002")


@rule(
    "CA003",
    "install-without-cache-mount",
    Category.performance,
    Severity.warning,
    "dockerfile",
    fix=CACHE_MOUNTS_FIX,
    safety=Applicability.safe,
    phase="dockerfiles",
)
def install_without_cache_mount(df: Dockerfile) -> Iterable[Hit]:
    """A package install runs without a BuildKit cache mount for its package manager's cache.

    One rule for every manager but pip (CA001); the message names the manager
    and the mount targets it needs:

        uv (`uv pip install`, `uv sync`)          /root/.cache/uv
        poetry (`poetry install`)                 /root/.cache/pypoetry
        npm (`npm ci`, `npm install`)             /root/.npm
        yarn (`yarn`, `yarn install`, `add`)      /usr/local/share/.cache/yarn
        pnpm (`pnpm install`, `add`, `fetch`)     /root/.local/share/pnpm/store ($PNPM_HOME/store)
        apt (`apt-get install`)                   /var/cache/apt, and /var/lib/apt when the RUN
                                                  runs `apt-get update`; both sharing=locked
        apk (`apk add`)                           /var/cache/apk
        go (`go build`, `install`, `test`)        /root/.cache/go-build and /go/pkg/mod
        go (`go mod download`)                    /go/pkg/mod
        cargo (`cargo build`, `install`, `fetch`) /usr/local/cargo/registry
        maven (`mvn`, `./mvnw`)                   /root/.m2
        gradle (`gradle`, `./gradlew`)            /root/.gradle

    Why: every rebuild of the layer downloads every package again. A cache
    mount keeps the manager's cache on the builder between builds and out of
    the image.

    Fix: adds the mounts right after `RUN` (only for a RUN that runs as
    root) and what they need to work: for apt, `sharing=locked` and
    `rm -f /etc/apt/apt.conf.d/docker-clean && ` before the command (the hook
    empties the mount; removing it in the same RUN changes no other
    instruction and adds no layer); for apk, `--update-cache` instead of
    `--no-cache` (the mount starts empty, so the index must be fetched); and
    it drops what would now defeat the mount (`rm -rf /var/lib/apt/lists/*`,
    `apt-get clean`, `npm cache clean`, ...).

    Example:
        RUN apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*

    Use instead:
        RUN --mount=type=cache,target=/var/cache/apt,sharing=locked --mount=type=cache,target=/var/lib/apt,sharing=locked rm -f /etc/apt/apt.conf.d/docker-clean && apt-get update && apt-get install -y curl

    Fix safety: safe, for the same reason as CA001: the mount is outside
    the image and the install commands stay the same. For apt it also
    removes `docker-clean` (so downloaded .debs land in the mount), which
    only changes where apt keeps downloads, not what it installs.
    """  # noqa: E501
    return _missing_hits(df, "CA003")


@rule(
    "CA004",
    "cache-mount-bypassed",
    Category.performance,
    Severity.warning,
    "dockerfile",
    fix=CACHE_REPAIR_FIX,
    safety=Applicability.safe,
    phase="dockerfiles",
)
def cache_mount_bypassed(df: Dockerfile) -> Iterable[Hit]:
    """A RUN has a cache mount and also empties or bypasses it.

    Fires on, beside a cache mount for the same manager: `npm cache clean`,
    `yarn cache clean`, `pip cache purge`, `uv cache clean`, `poetry cache
    clear`, `apt-get clean`, `apk cache clean`, `go clean -cache/-modcache`;
    `apk --no-cache`, `uv --no-cache`, `poetry --no-cache`; PIP_NO_CACHE_DIR
    set by ENV or on the command line (any value disables pip's cache, `0` and
    `off` included); and `rm` of a mounted cache directory, of anything in it
    (`rm -rf /var/lib/apt/lists/*` beside a /var/lib/apt mount), or of a parent.

    Why: the mount is not part of the image, so cleaning it saves no image
    bytes; it only throws the cache away, and the next build downloads
    everything again.

    Fix: removes the command with its `&&` (or the flag, or the variable;
    for apk `--no-cache` becomes `--update-cache`). An ENV PIP_NO_CACHE_DIR is
    removed only when every pip install it reaches has a cache mount (it also
    leaves the image's runtime environment). A heredoc RUN's script is not
    edited: the fix says so and leaves it.

    Example:
        RUN --mount=type=cache,target=/root/.npm npm ci && npm cache clean --force

    Use instead:
        RUN --mount=type=cache,target=/root/.npm npm ci

    Fix safety: safe: it removes a command that empties or bypasses the
    cache mount; the mount's contents are not in the image, so nothing the
    image holds or runs changes.
    """
    return _defeat_hits(df, "CA004")


@rule(
    "CA005",
    "apt-cache-mount-unlocked-or-emptied",
    Category.reliability,
    Severity.warning,
    "dockerfile",
    fix=CACHE_REPAIR_FIX,
    safety=Applicability.safe,
    phase="dockerfiles",
)
def apt_cache_mount_unlocked_or_emptied(df: Dockerfile) -> Iterable[Hit]:
    """An apt cache mount lacks `sharing=locked`, or docker-clean keeps it empty.

    Why: apt takes exclusive locks in /var/cache/apt and /var/lib/apt; with the
    default `sharing=shared`, two builds using the cache at once fail on the
    lock or corrupt it. And Debian/Ubuntu images ship
    /etc/apt/apt.conf.d/docker-clean, which deletes every downloaded .deb after
    an install: unless this RUN or an earlier one of the stage removes it, the
    /var/cache/apt mount never holds anything.

    Fix: adds `sharing=locked` to the mounts and puts
    `rm -f /etc/apt/apt.conf.d/docker-clean && ` before the RUN's command.

    Example:
        RUN --mount=type=cache,target=/var/cache/apt apt-get update && apt-get install -y curl

    Use instead:
        RUN --mount=type=cache,target=/var/cache/apt,sharing=locked rm -f /etc/apt/apt.conf.d/docker-clean && apt-get update && apt-get install -y curl

    Fix safety: safe: `sharing=locked` and keeping downloads only decide
    how parallel builds share the mount, not what is installed.
    """  # noqa: E501
    for run in cache_runs(df):
        for problem in apt_problems(run, cache_mounts(run.ins)):
            yield Hit(run.ins.start_line, problem.message, run.ins.original, run.ins.end_line)


# -- fixes -----------------------------------------------------------------------------------------------
# Cache fixes: add BuildKit cache mounts to package installs (cache-mounts), repair the ones that are defeated
# (cache-repair).
#
# Both re-parse the current file and edit only the lines of the instructions
# they change, in place: a mount goes right after ``RUN`` on the instruction's
# first line, the docker-clean removal right before the command, a defeating
# command goes with its ``&&`` (or ``;``), a flag with the whitespace before it.
# A line continuation that would be left dangling goes too; every other byte
# (comments, indentation, CRLF, the final-newline state) stays.
#
# cache-mounts changes a RUN only as far as its new mounts need: it adds them
# and removes what would defeat them; a defeat that was already there is
# cache-repair's (so each change fixes what its task is about). A heredoc RUN
# gets mounts, but a fix that would have to edit its script raises FixError.


HOOK_RM = f"rm -f {HOOK} && "
_KEYWORD = re.compile(r"[ \t]*RUN[ \t]+", re.IGNORECASE)
_COMMENT_LINES = re.compile(r"(?<=\n)[ \t]*#[^\r\n]*")
_CONTINUATION_BEFORE = re.compile(r"\\[ \t]*\r?\n(?:[ \t]*\r?\n)*\Z")
_GAP_AFTER = re.compile(W0)
_BLANKS = re.compile(r"[ \t]*")
_CONTINUATION_AT = re.compile(r"\\[ \t]*\r?\n")
_ESCAPE_DIRECTIVE = re.compile(r"^#\s*escape\s*=\s*`", re.IGNORECASE | re.MULTILINE)

Edit = tuple[int, int, str]  # (start, end, replacement) in an instruction's source


def _skip(pattern: re.Pattern[str], text: str, pos: int) -> int:
    """Where ``pattern``, which also matches the empty string, stops matching ``text`` from ``pos``."""
    found = pattern.match(text, pos)
    assert found is not None
    return found.end()


def mount_flag(cache: Cache, path: str) -> str:
    return f"--mount=type=cache,target={path}" + (",sharing=locked" if cache.locked else "")


def locked(flag: str) -> str:
    if re.search(r"(?<=[=,])sharing=", flag):
        return re.sub(r"(?<=[=,])sharing=[^,]*", "sharing=locked", flag)
    return flag + ",sharing=locked"


def _back(text: str, i: int) -> int:
    """Start of the blanks (spaces, continuations) that end at ``i``."""
    while i > 0:
        if text[i - 1] in " \t":
            i -= 1
            continue
        m = _CONTINUATION_BEFORE.search(text, 0, i)
        if m is None:
            return i
        i = m.start()
    return i


class Source:
    """One RUN's raw text, comment lines blanked (same length) so patterns don't match inside them."""

    def __init__(self, df: Dockerfile, ins: Instruction) -> None:
        self.ins = ins
        self.raw = df.source(ins)
        self.text = _COMMENT_LINES.sub(lambda m: " " * len(m.group()), self.raw)
        keyword = _KEYWORD.match(self.text)
        if keyword is None:
            raise Declined(f"line {ins.start_line}: can't find the RUN keyword")
        self.keyword_end = keyword.end()

    def flag_at(self, flag: str) -> int:
        at = self.text.find(flag, self.keyword_end)
        if at < 0:
            raise Declined(f"line {self.ins.start_line}: can't find {flag} as written")
        return at

    @property
    def head(self) -> int:
        """Where the command starts, after the flags."""
        pos = self.keyword_end
        for flag in self.ins.flags:
            pos = self.flag_at(flag) + len(flag)
        return _skip(_GAP_AFTER, self.text, pos)

    def removal(self, defeat: Defeat) -> Edit:
        s, e = defeat.start, defeat.end
        if defeat.action == "replace":
            return s, e, defeat.replacement
        if defeat.action == "token":
            before = _back(self.text, s)
            if before < self.head:  # it starts the command: take the blanks after it instead
                return s, _skip(_GAP_AFTER, self.text, e), ""
            return before, e, ""
        before = _back(self.text, s)
        if self.text.endswith(("&&", ";"), 0, before) and not self.text.endswith(("\\;", "\\&&"), 0, before):
            connector = before - (2 if self.text.endswith("&&", 0, before) else 1)
            return _back(self.text, connector), e, ""
        after = _skip(_GAP_AFTER, self.text, e)
        if before <= self.head and self.text.startswith(("&&", ";"), after) and not self.text.startswith("&&&", after):
            end = _skip(_BLANKS, self.text, after + (2 if self.text.startswith("&&", after) else 1))
            line_start = self.text.rfind("\n", 0, s) + 1
            continued = _CONTINUATION_AT.match(self.text, end)
            if continued and not self.text[line_start:s].strip():
                return line_start, continued.end(), ""  # the line held only this command: it goes whole
            return s, end, ""
        raise Declined(
            f"line {self.ins.start_line}: can't remove `{self.text[s:e].strip()}` "
            "without changing what else the command does"
        )

    def apply(self, edits: list[Edit]) -> list[str]:
        text = self.raw
        last = len(text) + 1
        unique = list(dict.fromkeys(edits))  # at one position, the earlier edit's text comes first
        for _, (start, end, new) in sorted(enumerate(unique), key=lambda x: (x[1][0], x[1][1], x[0]), reverse=True):
            if end > last:
                raise Declined(f"line {self.ins.start_line}: the edits overlap; left for a person")
            text = text[:start] + new + text[end:]
            last = start
        return text.splitlines(keepends=True)


def _current(project: Project, task: Task) -> Dockerfile:
    df = dockerfile_of(project, task)
    if _ESCAPE_DIRECTIVE.search(df.text):
        raise Declined(f"{task.file} sets `# escape=`: its continuations are not edited automatically")
    return df


def _plan_run(df: Dockerfile, run: Run, add: list[tuple[Cache, str]], repair: bool) -> tuple[list[Edit], list[Defeat]]:
    """The edits for one RUN, and the ENV defeats left to the caller.

    ``add``: mounts to add, and only what they need (new defeats, their docker-clean hook).
    ``repair``: every defeat and apt problem of the mounts it has.
    """
    ins = run.ins
    if add and not run.root:
        raise Declined(
            f"line {ins.start_line} runs as {df.user_at(ins)}: its caches are not under /root "
            "and a cache mount is root-owned; left for a person"
        )
    mounts = cache_mounts(ins)
    before = [target_of(o) for _, o in mounts]
    after = before + [path for _, path in add]
    new_mounts = [
        (mount_flag(c, p), {"type": "cache", "target": p, **({"sharing": "locked"} if c.locked else {})})
        for c, p in add
    ]
    problems = apt_problems(run, mounts + new_mounts)
    if not repair:
        problems = [p for p in problems if p not in apt_problems(run, mounts)]
    scripted = run.heredoc or ins.json
    source = None if scripted else Source(df, ins)
    text, pos = (run.text, 0) if source is None else (source.text, source.head)
    found = defeats(run, text, pos, after)
    if not repair:
        found = [d for d in found if d not in defeats(run, text, pos, before)]
    spans = [d for d in found if d.action != "env"]
    hook = any(not p.flag for p in problems)
    # the apk mount starts empty: apk must fetch its index (a replaced --no-cache already says so)
    update_apk = (
        any(c is APK for c, _ in add)
        and not APK_UPDATED.search(text, pos)
        and not any(d.action == "replace" for d in spans)
    )
    if scripted and (spans or hook or update_apk):
        form = "a heredoc" if run.heredoc else "an exec-form (JSON)"
        what = (
            f"remove {HOOK}"
            if hook
            else "add --update-cache to apk add"
            if update_apk
            else "remove " + "; ".join(d.message for d in spans)
        )
        raise Declined(
            f"line {ins.start_line} is {form} RUN: its script is not edited automatically ({what}); left for a person"
        )
    if hook and not run.root:
        raise Declined(f"line {ins.start_line} runs as {df.user_at(ins)}: it can't remove {HOOK}; left for a person")
    source = source or Source(df, ins)
    edits: list[Edit] = []
    if add:
        edits.append((source.keyword_end, source.keyword_end, " ".join(f for f, _ in new_mounts) + " "))
    for p in problems:
        if p.flag:
            at = source.flag_at(p.flag)
            edits.append((at, at + len(p.flag), locked(p.flag)))
    if hook:
        edits.append((source.head, source.head, HOOK_RM))
    if update_apk:
        edits += [(m.end(), m.end(), " --update-cache") for m in APK_ADD.finditer(source.text, source.head)]
    edits += [source.removal(d) for d in spans]
    return edits, [d for d in found if d.action == "env"]


def _pip_envs(df: Dockerfile, ins: Instruction) -> list[Instruction]:
    """Every ENV that sets PIP_NO_CACHE_DIR for ``ins`` (the last one wins, but the others would take over)."""
    return [e for e in preceding(df, ins) if e.cmd == "ENV" and "PIP_NO_CACHE_DIR" in e.value[::2]]


def _env_edit(df: Dockerfile, env: Instruction, covered: dict[int, list[str]]) -> tuple[int, int, list[str]]:
    """Drop PIP_NO_CACHE_DIR from ``env``, if every pip install it reaches will have a pip cache mount."""
    for ins in df.of("RUN"):
        run = run_of(df, ins)
        if env in _pip_envs(df, ins) and PIP_INSTALL.search(run.text):
            path = cache_dir(PIP, run)
            if not path or not any(covers(t, path) for t in covered[ins.start_line]):
                raise Declined(
                    f"ENV PIP_NO_CACHE_DIR at line {env.start_line} also governs the pip install at "
                    f"line {ins.start_line}, which has no pip cache mount; left for a person"
                )
    if len(env.value) == 2:
        return env.start_line, env.end_line, []
    text = "".join(df.lines[env.start_line - 1 : env.end_line])
    masked = _COMMENT_LINES.sub(lambda m: " " * len(m.group()), text)
    m = re.search(r"(?<![^\s])PIP_NO_CACHE_DIR=(?:\"[^\"]*\"|'[^']*'|\S*)", masked)
    if m is None:
        raise Declined(f"line {env.start_line}: can't find PIP_NO_CACHE_DIR as written")
    text = text[: _back(masked, m.start())] + text[m.end() :]
    return env.start_line, env.end_line, text.splitlines(keepends=True)


def _rewrite(df: Dockerfile, task: Task, plans: dict[int, tuple[Run, list[tuple[Cache, str]], bool]]) -> str:
    """Apply the per-RUN plans (start line -> run, mounts to add, repair?) and the ENV edits they need."""
    changes: dict[int, tuple[int, list[str]]] = {}
    envs: dict[int, Instruction] = {}
    covered = {i.start_line: [target_of(o) for _, o in cache_mounts(i)] for i in df.of("RUN")}
    for line, (run, add, repair) in plans.items():
        edits, env_defeats = _plan_run(df, run, add, repair)
        covered[line] += [p for _, p in add]
        envs.update({e.start_line: e for d in env_defeats for e in _pip_envs(df, run.ins)})
        if edits:
            changes[line] = (run.ins.end_line, Source(df, run.ins).apply(edits))
    for env in envs.values():
        start, end, lines = _env_edit(df, env, covered)
        changes[start] = (end, lines)
    text = df.text
    for start in sorted(changes, reverse=True):
        end, lines = changes[start]
        text = replace_lines(text, start, end, lines)
    _check(df, Dockerfile.parse(df.path, text), task)
    return text


def _check(before: Dockerfile, after: Dockerfile, task: Task) -> None:
    """The fixed file parses, the task's findings are gone, and no cache rule fires more often."""
    if after.error:
        raise FixError(f"the edit would not parse ({after.error}); left for a person")
    rules = load_all()
    for code in (c for c in rules if c.startswith("CA")):
        old = list(rules[code].check(before))
        new = list(rules[code].check(after))
        if code in task.rules and new:
            raise FixError(f"{code} would remain at line {new[0].line}: {new[0].message}")
        if len(new) > len(old):
            raise FixError(f"the edit would add {code} at line {new[-1].line}: {new[-1].message}")


@CACHE_MOUNTS_FIX.applies("Add BuildKit cache mounts to package installs in {file}")
def add_cache_mounts(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = _current(project, task)
    plans = {}
    for ins in df.of("RUN"):
        run = run_of(df, ins)
        add = [pair for _, caches in missing(run, [target_of(o) for _, o in cache_mounts(ins)]) for pair in caches]
        if add:
            plans[ins.start_line] = (run, list(dict.fromkeys(add)), False)
    if not plans:
        raise AlreadyResolved(
            f"every package install in {task.file} has its cache mounts: an earlier change added them"
        )
    return {task.file: _rewrite(df, task, plans)}


@CACHE_REPAIR_FIX.applies("Repair defeated BuildKit cache mounts in {file}")
def repair_cache_mounts(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = _current(project, task)
    plans: dict[int, tuple[Run, list[tuple[Cache, str]], bool]] = {}
    for ins in df.of("RUN"):
        run = run_of(df, ins)
        mounts = cache_mounts(ins)
        if defeats(run, run.text, 0, [target_of(o) for _, o in mounts]) or apt_problems(run, mounts):
            plans[ins.start_line] = (run, [], True)
    if not plans:
        raise AlreadyResolved(f"no cache mount in {task.file} is defeated any more: an earlier change repaired them")
    return {task.file: _rewrite(df, task, plans)}
