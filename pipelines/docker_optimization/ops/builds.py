"""Real builds through a Docker engine: timings, image size and layers, before and after.

Only when an engine answers (DOCKER_HOST or the default socket). Every build
uses BuildKit (``DOCKER_BUILDKIT=1``), ``--network host`` and never pushes.
A service whose base image is neither present nor pullable is "not
measured" with the reason; nothing here fails the run.

Only the builds a change touched are measured (``changed_builds``): a
service whose Dockerfile, ignore file and sent files are the same at base
and head would build the same image.

Scenarios, each the median of N builds of the base commit and of the head,
built in turns (base, head, base, ...) so that whatever else the engine does
weighs on both alike:
- no cache: ``--no-cache``. It turns off the layer cache *and* BuildKit's
  cache mounts (``RUN --mount=type=cache`` starts empty: measured on engine
  20.10, where a file a mount kept across builds is gone under --no-cache).
  There is no switch for "layers cold, cache mounts warm", so the figure is
  labelled as the build with no cache at all;
- source change: one source file the final image COPYs gets a line appended;
- dependency change: the dependency manifest gets a line appended.

The appended line is whitespace (valid at the end of source, requirements,
JSON, TOML or YAML files) and unique to each build: a fixed byte would make
the same content every run, and the engine's layer cache would answer from
an earlier run's build instead of rebuilding (rebuilds of 0.08 s that built
nothing, before this was found).

Services build in parallel, one ``docker build`` process each, as many at
once as the engine has CPUs (``docker info``'s NCPU: a figure the engine
reports, not a guess) or ``--build-jobs``. Not ``docker buildx bake``: bake needs the buildx
plugin, which the classic 20.10 client (and many CI hosts) lacks, and it
reports one time for all its targets while each service needs its own. A
budget (``--build-budget``) bounds the whole measurement: at the deadline
every running build is killed (the engine cancels a build whose client has
gone) and the services not finished say "not measured (build budget of N s
spent)".
"""

from __future__ import annotations

import io
import os
import posixpath
import secrets
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_pipelines.engine.artifacts import Measurement, Method
from agent_pipelines.engine.gitenv import git_env
from agent_pipelines.engine.telemetry import span
from agent_pipelines.pipelines.docker_optimization.model.copies import matching, sources
from agent_pipelines.pipelines.docker_optimization.model.project import Context, Project, relative, within

MANIFESTS = (
    "requirements",
    "pyproject.toml",
    "poetry.lock",
    "uv.lock",
    "Pipfile",
    "package.json",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "go.mod",
    "go.sum",
    "Cargo.toml",
    "Cargo.lock",
)
SCENARIOS = (
    ("cold", "build with no cache"),
    ("source", "rebuild after a source change"),
    ("deps", "rebuild after a dependency change"),
)
SIDES = ("base", "head")
DEFAULT_SOCKET = Path("/var/run/docker.sock")
BUILD_TIMEOUT = int(os.environ.get("PIPELINE_BUILD_TIMEOUT", "900"))
PULL_TIMEOUT = 120


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env)


@dataclass(frozen=True)
class Engine:
    ok: bool
    reason: str = ""
    version: str = ""
    cpus: int = 1  # what `docker info` reports: how many builds run at once


def probe() -> Engine:
    """Is a Docker engine reachable? Says why not when it isn't."""
    if not os.environ.get("DOCKER_HOST") and not DEFAULT_SOCKET.exists():
        return Engine(False, f"no Docker engine (DOCKER_HOST unset and no {DEFAULT_SOCKET})")
    if shutil.which("docker") is None:
        return Engine(False, "no docker client on PATH")
    try:
        out = docker("version", "--format", "{{.Server.Version}}", timeout=15)
    except subprocess.TimeoutExpired:
        return Engine(False, "the Docker engine did not answer within 15 s")
    if out.returncode != 0:
        return Engine(False, "the Docker engine is unreachable: " + _tail(out.stderr))
    info = docker("info", "--format", "{{.NCPU}}", timeout=15)
    cpus = info.stdout.strip()
    return Engine(True, version=out.stdout.strip(), cpus=int(cpus) if cpus.isdigit() and int(cpus) > 0 else 1)


def _tail(text: str, lines: int = 2) -> str:
    return " ".join(text.strip().splitlines()[-lines:])[:300]


# -- which builds a change touched --------------------------------------------


@dataclass(frozen=True)
class ChangedBuild:
    """A build to measure: the context at base and at head, and the changed paths it sees."""

    base: Context
    head: Context
    paths: tuple[str, ...]


def changed_paths(repo: Path, base: str, head: str) -> list[str]:
    """The paths that differ between two commits; a renamed file counts at its old path and its new one."""
    out = subprocess.run(
        ["git", "-C", str(repo), "diff", "--name-only", "-z", "--no-renames", base, head],
        check=True,
        capture_output=True,
        env=git_env(),
    ).stdout
    return [p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p]


def changed_builds(before: Project, after: Project, changed: Iterable[str]) -> list[ChangedBuild]:
    """The builds whose inputs ``changed`` (repository paths) touched, in the head's context order.

    A path counts for a (context directory, Dockerfile) build when the build
    would see it, at base or at head:
    - the Dockerfile, wherever it sits (in its context directory or outside it);
    - the ignore file BuildKit uses for this build (adding, editing or
      removing it changes what is sent);
    - a file in the context directory that the ignore file lets through
      (added, edited or removed).
    A file the ignore file excludes, at base and at head, is never sent:
    changing it changes no build. A build that is new at head (no base build
    to compare with) is left out.

    Example: with ``node_modules`` in services/web/.dockerignore, an edit to
    services/web/node_modules/x.js builds nothing; an edit to
    services/web/Dockerfile builds web even when its context is the
    repository root.
    """
    changed = sorted(set(changed))
    old = {(c.dir, c.dockerfile): c for c in before.contexts}
    out = []
    for ctx in after.contexts:
        base = old.get((ctx.dir, ctx.dockerfile))
        if base is None or ctx.dockerfile not in before.dockerfiles:
            continue
        inputs = {ctx.dockerfile, ctx.ignore_path, base.ignore_path} - {""}
        seen = tuple(
            p
            for p in changed
            if p in inputs
            or (within(p, ctx.dir) and (ctx.sends(relative(p, ctx.dir)) or base.sends(relative(p, ctx.dir))))
        )
        if seen:
            out.append(ChangedBuild(base, ctx, seen))
    return out


# -- the trees to build -------------------------------------------------------


def export_tree(repo: Path, commit: str, dest: Path, paths: Iterable[str] = ()) -> Path:
    """The files of ``commit`` (only those under ``paths``, when given) written under ``dest``.

    git archive: no worktree to clean up. Each build gets its own copy, so a
    line appended for one service's rebuild never reaches another's build.
    """
    spec = ["--", *paths] if paths else []
    data = subprocess.run(
        ["git", "--literal-pathspecs", "-C", str(repo), "archive", "--format=tar", commit, *spec],
        check=True,
        capture_output=True,
        env=git_env(),
    ).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def build_paths(ctx: Context) -> list[str]:
    """What ``docker build`` of ``ctx`` reads: its context directory, Dockerfile and that Dockerfile's ignore file."""
    if ctx.dir in ("", "."):
        return []  # the whole tree
    paths = [ctx.dir, ctx.dockerfile]
    if ctx.dockerfile + ".dockerignore" in ctx.project.files:
        paths.append(ctx.dockerfile + ".dockerignore")
    return paths


def base_images(ctx: Context) -> list[str]:
    df = ctx.project.dockerfiles[ctx.dockerfile]
    names = {s.name.lower() for s in df.stages if s.name}
    return sorted(
        {s.base for s in df.stages if s.base.lower() not in names and s.base != "scratch" and "$" not in s.base}
    )


def missing_base(ctx: Context, pull_timeout: float = PULL_TIMEOUT) -> str:
    """Why the build can't start ("" when every base image is present or pulled)."""
    for image in base_images(ctx):
        if docker("image", "inspect", image, timeout=30).returncode == 0:
            continue
        try:
            pulled = docker("pull", "--quiet", image, timeout=pull_timeout)
        except subprocess.TimeoutExpired:
            return f"base image {image} is not present and pulling it timed out"
        if pulled.returncode != 0:
            return f"base image {image} is not present and can't be pulled ({_tail(pulled.stderr, 1)})"
    return ""


# -- running builds -----------------------------------------------------------


class Stopped(Exception):
    """The builds were stopped: the budget is spent, or the measurement was interrupted."""


class Builds:
    """The ``docker build`` processes of one measurement: one deadline for all, and ``stop()`` for the rest.

    ``budget`` is seconds from now (None: no limit). A build still running at
    the deadline is killed and raises ``Stopped``; so does one asked for after
    it, or after ``stop()``. Killing the client is enough: the engine cancels a
    build whose client went away (its RUN processes end with it).
    """

    def __init__(self, budget: float | None = None) -> None:
        self.budget = budget
        self.deadline = None if budget is None else time.monotonic() + budget
        self._live: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def spent(self) -> bool:
        return self._stopped or (self.deadline is not None and time.monotonic() >= self.deadline)

    def cap(self, seconds: float) -> float:
        """``seconds``, or less when the deadline comes first."""
        return seconds if self.deadline is None else min(seconds, self.deadline - time.monotonic())

    def why_stopped(self) -> str:
        if self.deadline is not None and time.monotonic() >= self.deadline:  # set with the budget
            return f"build budget of {self.budget:g} s spent"
        return "the measurement was stopped before this build finished"

    def build(
        self,
        root: Path,
        ctx: Context,
        tag: str,
        no_cache: bool = False,
        labels: dict[str, str] | None = None,
        options: tuple[str, ...] = (),
    ) -> tuple[float | None, str]:
        """(seconds, "") for a successful build, (None, error) otherwise; ``Stopped`` past the deadline."""
        attributes = {
            "pipeline.build.dockerfile": ctx.dockerfile,
            "pipeline.build.context": ctx.dir,
            "pipeline.build.no_cache": no_cache,
        }
        with span("build", **attributes) as traced:
            seconds, error = self._build(root, ctx, tag, no_cache, labels, options)
            if traced is not None:
                traced.set_attributes({"pipeline.build.seconds": seconds, "pipeline.build.error": error[:500]})
            return seconds, error

    def _build(
        self,
        root: Path,
        ctx: Context,
        tag: str,
        no_cache: bool,
        labels: dict[str, str] | None,
        options: tuple[str, ...],
    ) -> tuple[float | None, str]:
        args = ["docker", "build", "--network", "host", "-q", "-t", tag, "-f", str(root / ctx.dockerfile)]
        args += [f"--label={k}={v}" for k, v in (labels or {}).items()] + list(options)
        if no_cache:
            args.append("--no-cache")
        timeout = self.cap(BUILD_TIMEOUT)
        with self._lock:
            if self._stopped or timeout <= 0:
                raise Stopped()
            proc = subprocess.Popen(
                [*args, str(root / ctx.dir)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "DOCKER_BUILDKIT": "1"},
            )
            self._live.add(proc)
        started = time.perf_counter()
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            if self.spent():
                raise Stopped() from None
            return None, f"build timed out after {BUILD_TIMEOUT} s"
        finally:
            with self._lock:
                self._live.discard(proc)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0 and self._stopped:
            raise Stopped()
        return (elapsed, "") if proc.returncode == 0 else (None, _tail(stderr, 3))

    def stop(self) -> None:
        """Kill every build still running; no new one starts."""
        with self._lock:
            self._stopped = True
            live = list(self._live)
        for proc in live:
            proc.kill()


def build(
    root: Path,
    ctx: Context,
    tag: str,
    no_cache: bool = False,
    labels: dict[str, str] | None = None,
    options: tuple[str, ...] = (),
) -> tuple[float | None, str]:
    """One build with no budget: (seconds, "") for a successful build, (None, error) otherwise."""
    return Builds().build(root, ctx, tag, no_cache, labels, options)


def compose_options(ctx: Context) -> list[tuple[str, ...]]:
    """The `docker build` options of each distinct way compose builds ``ctx`` (its target and build args, as
    compose passes them); [()] when no compose file builds it or all build it plainly."""
    found: dict[tuple[str, ...], None] = {}
    for spec in ctx.builds:
        options = (("--target", spec.target) if spec.target else ()) + tuple(
            part for key, value in sorted(spec.arg_values.items()) for part in ("--build-arg", f"{key}={value}")
        )
        found.setdefault(options, None)
    return list(found) or [()]


def image_facts(tag: str) -> tuple[float | None, float | None]:
    out = docker("image", "inspect", "--format", "{{.Size}} {{len .RootFS.Layers}}", tag, timeout=30)
    if out.returncode != 0:
        return None, None
    size, layers = out.stdout.split()
    return float(size), float(layers)


def touch_targets(ctx: Context) -> tuple[str, str]:
    """(a source file, a dependency manifest) the final stage COPYs, context-relative ("" when none)."""
    df = ctx.project.dockerfiles[ctx.dockerfile]
    files = ctx.sent()
    copied: list[str] = []
    for src in sources(df):
        copied += sorted(matching(files, src.path))
    manifests = [p for p in copied if posixpath.basename(p).startswith(MANIFESTS)]
    code = [p for p in copied if p not in manifests and p.endswith((".py", ".js", ".ts", ".go", ".rs", ".java"))]
    # The service's own files first (beside its Dockerfile), then shared ones (libs/ a root context also sends).
    home = posixpath.dirname(ctx.dockerfile)
    own = relative(home, ctx.dir) if within(home, ctx.dir) else ""
    first = sorted(code, key=lambda p: not (own and within(p, own))) + [""]
    manifest = sorted(manifests, key=lambda p: not (own and within(p, own))) + [""]
    return first[0], manifest[0]


def unique_blank_line() -> bytes:
    """A line of 64 spaces and tabs spelling a random 64-bit number: no earlier build saw this content."""
    bits = secrets.randbits(64)
    return b"\n" + b"".join(b"\t" if bits >> i & 1 else b" " for i in range(64)) + b"\n"


def _append_line(root: Path, ctx: Context, rel: str) -> None:
    with open(root / (rel if ctx.dir == "." else f"{ctx.dir}/{rel}"), "ab") as fh:
        fh.write(unique_blank_line())


def time_scenarios(
    roots: dict[str, Path], ctxs: dict[str, Context], tags: dict[str, str], repeats: int, builds: Builds
) -> dict[str, Any]:
    """Median seconds per scenario and side ("cold" -> {"base": s, "head": s}), plus size and layers.

    Base and head build in turns, so load from other builds weighs on both
    alike. "error" says why a build failed (the rest is then not built);
    "stopped" is set when the budget ran out (finished scenarios are kept,
    a scenario with fewer than ``repeats`` builds is not reported).
    """
    results: dict[str, Any] = {}  # figures by scenario, "size"/"layers" by side, "error", "stopped"
    targets = {side: dict(zip(("source", "deps"), touch_targets(ctxs[side]))) for side in SIDES}
    try:
        for key, _ in SCENARIOS:
            if key != "cold" and not all(targets[side][key] for side in SIDES):
                results[key] = "no file to change: the final image COPYs no " + (
                    "source file" if key == "source" else "dependency manifest"
                )
                continue
            timings: dict[str, list[float]] = {side: [] for side in SIDES}
            for _ in range(repeats):
                for side in SIDES:
                    if key != "cold":
                        _append_line(roots[side], ctxs[side], targets[side][key])
                    seconds, error = builds.build(roots[side], ctxs[side], tags[side], no_cache=key == "cold")
                    if seconds is None:
                        results["error"] = f"the {'build' if key == 'cold' else 'rebuild'} of the {side} fails: {error}"
                        return results
                    timings[side].append(seconds)
            results[key] = {side: statistics.median(timings[side]) for side in SIDES}
            if key != "cold":
                results[f"{key}_file"] = _touched(targets["base"][key], targets["head"][key])
    except Stopped:
        results["stopped"] = True
        return results
    for side in SIDES:
        size, layers = image_facts(tags[side])
        results.setdefault("size", {})[side] = size
        results.setdefault("layers", {})[side] = layers
    return results


def measure_services(
    phase: str,
    repo: Path,
    base: str,
    head: str,
    changed: list[ChangedBuild],
    repeats: int,
    budget: float | None = None,
    jobs: int | None = None,
) -> list[Measurement]:
    """Real-build figures for each changed build, base commit against head, several builds at once.

    ``budget`` (seconds, None for no limit) bounds the whole measurement: the
    builds not finished by then are reported "not measured (build budget of
    N s spent)", and every build still running is killed. ``jobs`` builds run
    at once (None: as many as the engine reports CPUs). On a host whose CPUs
    are already busy, parallel CPU-bound builds finish no sooner and each
    figure grows with the others' load (``--build-jobs 1`` then measures each
    build alone).
    """
    engine = probe()
    subjects = _subjects([c.head for c in changed])
    if not engine.ok:
        return [_not_measured(name, subject, phase, engine.reason) for subject in subjects for _, name in SCENARIOS]
    builds = Builds(budget)
    jobs = max(1, min(jobs or engine.cpus, len(changed)))
    how = (
        f"median of {repeats} `docker build` runs each (BuildKit, --network host, engine {engine.version}) "
        f"of base {base[:10]} and head {head[:10]}, built in turns"
    )
    if jobs > 1:
        how += (
            f"; {jobs} services built at once (the engine reports {engine.cpus} CPUs), "
            "so each figure includes the others' load"
        )
    with tempfile.TemporaryDirectory(prefix="pipeline-measure-") as tmp, ThreadPoolExecutor(jobs) as pool:
        futures = [
            pool.submit(
                _measure_one, phase, repo, (base, head), item, subject, Path(tmp) / str(i), repeats, builds, how
            )
            for i, (item, subject) in enumerate(zip(changed, subjects))
        ]
        try:
            return [figure for future in futures for figure in future.result()]
        finally:
            builds.stop()  # on an error or Ctrl-C: no build outlives the measurement (a no-op once all finished)
            pool.shutdown(cancel_futures=True)


def _measure_one(
    phase: str,
    repo: Path,
    commits: tuple[str, str],
    item: ChangedBuild,
    subject: str,
    tmp: Path,
    repeats: int,
    builds: Builds,
    how: str,
) -> list[Measurement]:
    """The figures of one changed build: three scenarios, then image size and layers."""
    if builds.spent():
        return [_not_measured(name, subject, phase, builds.why_stopped()) for _, name in SCENARIOS]
    why = missing_base(item.head, builds.cap(PULL_TIMEOUT))
    if builds.spent():
        why = builds.why_stopped()
    if why:
        return [_not_measured(name, subject, phase, why) for _, name in SCENARIOS]
    ctxs = {"base": item.base, "head": item.head}
    roots = {
        side: export_tree(repo, commit, tmp / side, build_paths(ctxs[side])) for side, commit in zip(SIDES, commits)
    }
    tags = {side: f"pipeline-measure/{tmp.name}-{_slug(subject)}:{side}" for side in SIDES}
    try:
        results = time_scenarios(roots, ctxs, tags, repeats, builds)
    finally:
        for tag in tags.values():
            docker("image", "rm", "-f", tag, timeout=60)
    touched = ", ".join(item.paths[:3]) + (f" and {len(item.paths) - 3} more" if len(item.paths) > 3 else "")
    detail = {
        "cold": "--no-cache: no layer cache, and BuildKit cache mounts start empty too",
        "source": f"a unique blank line appended to {results.get('source_file')}",
        "deps": f"a unique blank line appended to {results.get('deps_file')}",
    }
    out = []
    for key, name in SCENARIOS:
        figure = results.get(key)
        if isinstance(figure, dict):
            out.append(
                Measurement(
                    name=name,
                    subject=subject,
                    phase=phase,
                    value=round(figure["head"], 2),
                    baseline=round(figure["base"], 2),
                    unit="s",
                    method=Method.measured,
                    how=f"{how}; {detail[key]}; built because the change touched {touched}",
                )
            )
        else:
            reason = figure or results.get("error") or (builds.why_stopped() if results.get("stopped") else "no figure")
            out.append(_not_measured(name, subject, phase, str(reason)))
    base, head = commits
    for key, name, unit in (("size", "image size", "bytes"), ("layers", "image layers", "")):
        figure = results.get(key) or {}
        if isinstance(figure.get("head"), float) and isinstance(figure.get("base"), float):
            out.append(
                Measurement(
                    name=name,
                    subject=subject,
                    phase=phase,
                    value=figure["head"],
                    baseline=figure["base"],
                    unit=unit,
                    method=Method.measured,
                    how=f"`docker image inspect` of the images built from base {base[:10]} and head {head[:10]}",
                )
            )
    return out


def _touched(base: str, head: str) -> str:
    """The file a scenario changed; both when base and head changed different ones (not like for like)."""
    return head if base == head else f"{head} (at base: {base})"


def _subject(ctx: Context) -> str:
    return ", ".join(ctx.services) or ctx.dockerfile


def _subjects(contexts: list[Context]) -> list[str]:
    """Each build's name in the report; the context directory is added where two builds share a name."""
    names = [_subject(c) for c in contexts]
    return [f"{n} (context {c.dir})" if names.count(n) > 1 else n for n, c in zip(names, contexts)]


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in text.lower()).strip("-.")[:80] or "build"


def _not_measured(name: str, subject: str, phase: str, reason: str) -> Measurement:
    return Measurement(
        name=name,
        subject=subject,
        phase=phase,
        value=None,
        unit="s",
        method=Method.not_measured,
        how=f"not measured ({reason})",
    )


def verify_build(root: Path, ctx: Context) -> tuple[bool, str]:
    """Build ``ctx`` as it is under ``root``; (passed, detail). Used by the reviewer's --verify-builds gate."""
    why = missing_base(ctx)
    if why:
        return True, f"not built: {why}"
    tag = f"pipeline-verify/{_slug(_subject(ctx))}:check"
    seconds, error = build(root, ctx, tag)
    docker("image", "rm", "-f", tag, timeout=60)
    return (True, f"built in {seconds:.1f} s") if seconds is not None else (False, error)


# -- does the image start and report healthy? (the reviewer's gate under --verify-builds) ---------

LABEL = "pipeline.verify"  # on every image and container the gate makes; `docker ps -a --filter label=...` finds any
# Docker's values for HEALTHCHECK options left unset (Dockerfile reference, HEALTHCHECK): they are what the engine
# itself waits, so the gate's wait is the image's own, never a number of ours.
HEALTH_DEFAULTS = {"Interval": 30.0, "Timeout": 30.0, "StartPeriod": 0.0, "Retries": 3}


@dataclass(frozen=True)
class Started:
    """What building and starting an image showed.

    ``problem`` is "" when it passed or could not be judged (then ``verified`` is False and ``detail``
    says why); problem strings name nothing that varies between runs, so a parent with the same
    problem compares equal (see ``engine.gates``). ``size`` is `docker image inspect`'s, in bytes.
    """

    problem: str
    detail: str
    verified: bool = True
    size: float | None = None
    seconds: float = 0.0  # build and start, wall clock


@dataclass(frozen=True)
class Health:
    test: list[str]
    interval: float
    timeout: float
    start_period: float
    retries: int

    @property
    def bound(self) -> float:
        """How long the engine may take to call the container healthy or unhealthy: the start period, then
        one interval before the first check and ``retries`` checks of up to interval + timeout each."""
        return self.start_period + self.interval + self.retries * (self.interval + self.timeout)

    @property
    def shown(self) -> str:
        return " ".join(self.test)


def healthcheck(tag: str) -> Health | None:
    """The image's HEALTHCHECK with Docker's defaults filled in (None when it has none or disables it)."""
    import json

    out = docker("image", "inspect", "--format", "{{json .Config.Healthcheck}}", tag, timeout=30)
    try:
        config = json.loads(out.stdout or "null") or {}
    except ValueError:
        return None
    test = config.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    command = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" and len(test) > 1 else list(test[1:])
    seconds = {k: (config.get(k) or 0) / 1e9 or v for k, v in HEALTH_DEFAULTS.items() if k != "Retries"}
    return Health(
        command,
        seconds["Interval"],
        seconds["Timeout"],
        seconds["StartPeriod"],
        int(config.get("Retries") or HEALTH_DEFAULTS["Retries"]),
    )


def _state(name: str) -> dict:
    import json

    out = docker("inspect", "--format", "{{json .State}}", name, timeout=30)
    try:
        return json.loads(out.stdout or "{}") or {}
    except ValueError:
        return {}


def start_check(tag: str, command: list[str] | None = None, timeout: float | None = None, token: str = "") -> Started:
    """Start a container of ``tag`` (no network) and judge it.

    With ``command`` (a probe from .pipeline.yaml) that command runs in a fresh container and must
    exit 0 within ``timeout`` (the configured ``probe_timeout``; else the image's HEALTHCHECK bound;
    else the build's own limit, PIPELINE_BUILD_TIMEOUT). Otherwise the image's command starts and,
    when the image has a HEALTHCHECK, the engine's own health status decides: healthy passes,
    unhealthy or an exit fails, and the wait is the HEALTHCHECK's (start period, interval, timeout,
    retries). Without either the container starting is all that is seen: not verified.
    """
    name = f"pipeline-start-{secrets.token_hex(4)}"
    labels = ["--label", f"{LABEL}={token or name}"]
    health = healthcheck(tag)
    if command:
        limit = timeout or (health.bound if health else BUILD_TIMEOUT)
        shown = " ".join(command)
        try:
            out = docker(
                "run",
                "--rm",
                "--network",
                "none",
                "--name",
                name,
                *labels,
                "--entrypoint",
                command[0],
                tag,
                *command[1:],
                timeout=limit,
            )
        except subprocess.TimeoutExpired:
            return Started("the probe did not finish", f"{shown} ran longer than {limit:g} s")
        finally:
            docker("rm", "-f", name, timeout=60)
        if out.returncode != 0:
            return Started("the probe fails", f"{shown} exited {out.returncode}: {_tail(out.stderr or out.stdout)}")
        return Started("", f"probe {shown} passed")
    started = docker("run", "-d", "--network", "none", "--name", name, *labels, tag, timeout=60)
    try:
        if started.returncode != 0:
            return Started("the container does not start", _tail(started.stderr))
        deadline = time.monotonic() + (health.bound if health else 0)
        while True:
            state = _state(name)
            status = state.get("Status", "")
            if status in ("exited", "dead"):
                code = state.get("ExitCode")
                if code == 0:
                    return Started("", "its command ran and exited 0")
                logs = docker("logs", "--tail", "5", name, timeout=30)
                return Started(
                    "the container exits with an error", f"exit {code}: {_tail(logs.stderr or logs.stdout, 3)}"
                )
            if health is None:
                return Started(
                    "",
                    "started; not verified further: the image has no HEALTHCHECK and .pipeline.yaml "
                    "configures no probe for it",
                    verified=False,
                )
            verdict = (state.get("Health") or {}).get("Status", "")
            if verdict == "healthy":
                return Started("", f"running, and its HEALTHCHECK ({health.shown}) passes")
            if verdict == "unhealthy" or time.monotonic() >= deadline:
                log = (state.get("Health") or {}).get("Log") or [{}]
                said = _tail(str(log[-1].get("Output", "")))
                why = f"exit {log[-1].get('ExitCode')}: {said}" if log[-1] else "no check finished"
                return Started(
                    "the health check fails" if verdict == "unhealthy" else "the health check never reported",
                    f"{health.shown}: {why} (the engine waited up to {health.bound:g} s: "
                    "the HEALTHCHECK's start period, interval, timeout and retries)",
                )
            time.sleep(min(1.0, health.interval))
    finally:
        docker("rm", "-f", name, timeout=60)


def remove_labelled(value: str) -> None:
    """Remove every container and image labelled ``pipeline.verify=value`` (what an interrupted check left)."""
    for kind, remove in (("ps", ("rm", "-f")), ("images", ("image", "rm", "-f"))):
        found = docker(kind, *(("-a",) if kind == "ps" else ()), "-q", "--filter", f"label={LABEL}={value}", timeout=30)
        ids = sorted(set(found.stdout.split()))
        if ids:
            docker(*remove, *ids, timeout=120)


def verify_image(
    root: Path,
    ctx: Context,
    command: list[str] | None = None,
    timeout: float | None = None,
    options: tuple[str, ...] = (),
) -> Started:
    """Build ``ctx`` under ``root`` with the layer cache (and compose's ``options``), start it and judge it.

    A base image that can't be had is "not verified": nothing was tried. The image and the container
    carry a label unique to this check and are removed afterwards, on an error or Ctrl-C too.
    """
    from agent_pipelines.pipelines.docker_optimization.model.dockerfile import signals_deferred

    why = missing_base(ctx)
    if why:
        return Started("", f"not verified: {why}", verified=False)
    token = secrets.token_hex(6)
    tag = f"pipeline-start/{_slug(_subject(ctx))}:{token}"
    began = time.perf_counter()
    try:
        seconds, error = build(root, ctx, tag, labels={LABEL: token}, options=options)
        if seconds is None:
            return Started("the image does not build", error, seconds=time.perf_counter() - began)
        size, _layers = image_facts(tag)
        found = start_check(tag, command, timeout, token)
        return Started(found.problem, found.detail, found.verified, size, time.perf_counter() - began)
    finally:
        with signals_deferred():  # a second Ctrl-C waits until the cleanup is done
            docker("image", "rm", "-f", tag, timeout=60)
            remove_labelled(token)


def verify_start(root: Path, ctx: Context, command: list[str] | None = None) -> tuple[str, str]:
    """``verify_image`` as (problem, detail): ("", how) when it works or could not be judged."""
    found = verify_image(root, ctx, command)
    return found.problem, found.detail
