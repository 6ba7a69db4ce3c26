"""Real builds through a Docker engine: timings, image size and layers, before and after.

Only when an engine answers (DOCKER_HOST or the default socket). Every build
uses BuildKit (``DOCKER_BUILDKIT=1``), ``--network host`` and never pushes.
A service whose base image is neither present nor pullable is "not
measured" with the reason; nothing here fails the run.

Scenarios, each the median of N builds of the base commit and of the head:
- cold: ``--no-cache`` (layer cache off; BuildKit cache mounts keep what
  earlier builds left, as on a CI builder with a persistent cache);
- source change: one source file the final image COPYs gets a line appended;
- dependency change: the dependency manifest gets a line appended.

The appended line is whitespace (valid at the end of source, requirements,
JSON, TOML or YAML files) and unique to each build: a fixed byte would make
the same content every run, and the engine's layer cache would answer from
an earlier run's build instead of rebuilding (rebuilds of 0.08 s that built
nothing, before this was found).
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
import time
from dataclasses import dataclass
from pathlib import Path

from engine.artifacts import Measurement, Method
from engine.gitenv import git_env
from pipelines.docker_optimization.copies import matching, sources
from pipelines.docker_optimization.project import Context, relative, within

MANIFESTS = ("requirements", "pyproject.toml", "poetry.lock", "uv.lock", "Pipfile", "package.json",
             "package-lock.json", "yarn.lock", "pnpm-lock.yaml", "go.mod", "go.sum", "Cargo.toml", "Cargo.lock")
SCENARIOS = (("cold", "cold build"), ("source", "rebuild after a source change"),
             ("deps", "rebuild after a dependency change"))
DEFAULT_SOCKET = Path("/var/run/docker.sock")
BUILD_TIMEOUT = int(os.environ.get("PIPELINE_BUILD_TIMEOUT", "900"))


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env)


@dataclass(frozen=True)
class Engine:
    ok: bool
    reason: str = ""
    version: str = ""


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
    return Engine(True, version=out.stdout.strip())


def _tail(text: str, lines: int = 2) -> str:
    return " ".join(text.strip().splitlines()[-lines:])[:300]


def export_tree(repo: Path, commit: str, dest: Path) -> Path:
    """The files of ``commit`` written under ``dest`` (git archive; no worktree to clean up)."""
    data = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", commit], check=True,
                          capture_output=True, env=git_env()).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def base_images(ctx: Context) -> list[str]:
    df = ctx.project.dockerfiles[ctx.dockerfile]
    names = {s.name.lower() for s in df.stages if s.name}
    return sorted({s.base for s in df.stages if s.base.lower() not in names and s.base != "scratch" and "$" not in s.base})


def missing_base(ctx: Context) -> str:
    """Why the build can't start ("" when every base image is present or pulled)."""
    for image in base_images(ctx):
        if docker("image", "inspect", image, timeout=30).returncode == 0:
            continue
        try:
            pulled = docker("pull", "--quiet", image, timeout=120)
        except subprocess.TimeoutExpired:
            return f"base image {image} is not present and pulling it timed out"
        if pulled.returncode != 0:
            return f"base image {image} is not present and can't be pulled ({_tail(pulled.stderr, 1)})"
    return ""


def build(root: Path, ctx: Context, tag: str, no_cache: bool = False) -> tuple[float | None, str]:
    """(seconds, "") for a successful build, (None, error) otherwise."""
    args = ["build", "--network", "host", "-q", "-t", tag, "-f", str(root / ctx.dockerfile)]
    if no_cache:
        args.append("--no-cache")
    started = time.perf_counter()
    try:
        out = docker(*args, str(root / ctx.dir), timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, f"build timed out after {BUILD_TIMEOUT} s"
    elapsed = time.perf_counter() - started
    return (elapsed, "") if out.returncode == 0 else (None, _tail(out.stderr, 3))


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


def time_scenarios(root: Path, ctx: Context, tag: str, repeats: int) -> dict[str, object]:
    """Median seconds per scenario for one tree, plus size and layers; strings explain gaps."""
    results: dict[str, object] = {}
    cold = []
    for _ in range(repeats):
        seconds, error = build(root, ctx, tag, no_cache=True)
        if seconds is None:
            return {"error": f"the build fails: {error}"}
        cold.append(seconds)
    results["cold"] = statistics.median(cold)
    source, manifest = touch_targets(ctx)
    for key, target in (("source", source), ("deps", manifest)):
        if not target:
            results[key] = "no file to change: the final image COPYs no " + ("source file" if key == "source" else "dependency manifest")
            continue
        timings = []
        for _ in range(repeats):
            _append_line(root, ctx, target)
            seconds, error = build(root, ctx, tag)
            if seconds is None:
                return {"error": f"the rebuild fails: {error}"}
            timings.append(seconds)
        results[key] = statistics.median(timings)
        results[f"{key}_file"] = target
    results["size"], results["layers"] = image_facts(tag)
    return results


def measure_services(phase: str, repo: Path, base: str, head: str, contexts: list[tuple[Context, Context]],
                     repeats: int) -> list[Measurement]:
    """Real-build figures for each (base context, head context) pair of a service."""
    engine = probe()
    out: list[Measurement] = []
    if not engine.ok:
        for _, ctx in contexts:
            for _, name in SCENARIOS:
                out.append(_not_measured(name, _subject(ctx), phase, engine.reason))
        return out
    with tempfile.TemporaryDirectory(prefix="pipeline-measure-") as tmp:
        roots = {"base": export_tree(repo, base, Path(tmp) / "base"), "head": export_tree(repo, head, Path(tmp) / "head")}
        for base_ctx, head_ctx in contexts:
            subject = _subject(head_ctx)
            why = missing_base(head_ctx)
            if why:
                out += [_not_measured(name, subject, phase, why) for _, name in SCENARIOS]
                continue
            tag = "pipeline-measure/" + subject.replace(" ", "-").replace("/", "-").lower()
            before = time_scenarios(roots["base"], base_ctx, f"{tag}:base", repeats)
            after = time_scenarios(roots["head"], head_ctx, f"{tag}:head", repeats)
            how = (f"median of {repeats} `docker build` runs (BuildKit, --network host, engine {engine.version}) "
                   f"of base {base[:10]} and head {head[:10]}")
            for key, name in SCENARIOS:
                b, a = before.get(key, before.get("error")), after.get(key, after.get("error"))
                if isinstance(a, float) and isinstance(b, float):
                    detail = {"cold": "--no-cache; cache mounts as earlier builds left them",
                              "source": f"a unique blank line appended to {_touched(before, after, 'source_file')}",
                              "deps": f"a unique blank line appended to {_touched(before, after, 'deps_file')}"}[key]
                    out.append(Measurement(name=name, subject=subject, phase=phase, value=round(a, 2),
                                           baseline=round(b, 2), unit="s", method=Method.measured,
                                           how=f"{how}; {detail}"))
                else:
                    out.append(_not_measured(name, subject, phase, str(a if not isinstance(a, float) else b)))
            for key, name, unit in (("size", "image size", "bytes"), ("layers", "image layers", "")):
                if isinstance(after.get(key), float) and isinstance(before.get(key), float):
                    out.append(Measurement(name=name, subject=subject, phase=phase, value=after[key],
                                           baseline=before[key], unit=unit, method=Method.measured,
                                           how=f"`docker image inspect` of the images built from base {base[:10]} and head {head[:10]}"))
            for suffix in ("base", "head"):
                docker("image", "rm", "-f", f"{tag}:{suffix}", timeout=60)
    return out


def _touched(before: dict, after: dict, key: str) -> str:
    """The file a scenario changed; both when base and head changed different ones (not like for like)."""
    head, base = after.get(key), before.get(key)
    return str(head) if base == head else f"{head} (at base: {base})"


def _subject(ctx: Context) -> str:
    return ", ".join(ctx.services) or ctx.dockerfile


def _not_measured(name: str, subject: str, phase: str, reason: str) -> Measurement:
    return Measurement(name=name, subject=subject, phase=phase, value=None, unit="s", method=Method.not_measured,
                       how=f"not measured ({reason})")


def verify_build(root: Path, ctx: Context) -> tuple[bool, str]:
    """Build ``ctx`` as it is under ``root``; (passed, detail). Used by the reviewer's --verify-builds gate."""
    why = missing_base(ctx)
    if why:
        return True, f"not built: {why}"
    tag = f"pipeline-verify/{_subject(ctx).replace(' ', '-').replace('/', '-').replace(',', '').lower()}:check"
    seconds, error = build(root, ctx, tag)
    docker("image", "rm", "-f", tag, timeout=60)
    return (True, f"built in {seconds:.1f} s") if seconds is not None else (False, error)


# -- does the image start? (the reviewer's gate for unsafe changes under --verify-builds) -----------

START_WAIT = float(os.environ.get("PIPELINE_START_WAIT", "5"))      # a process alive this long has started
HEALTH_WAIT = float(os.environ.get("PIPELINE_HEALTH_WAIT", "30"))   # how long the health check may take to pass


def _healthcheck(tag: str) -> list[str]:
    """The image's HEALTHCHECK as a command to exec ([] when it has none or disables it)."""
    import json

    out = docker("image", "inspect", "--format", "{{json .Config.Healthcheck}}", tag, timeout=30)
    try:
        test = (json.loads(out.stdout or "null") or {}).get("Test") or []
    except ValueError:
        return []
    if not test or test[0] == "NONE":
        return []
    return ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" and len(test) > 1 else list(test[1:])


def start_check(tag: str, command: list[str] | None = None) -> tuple[str, str]:
    """Start a container of ``tag`` and judge it: ("", how it passed) or (the problem, its detail).

    With ``command`` (a configured probe) that command runs in a fresh container
    and must exit 0. Otherwise the image's own command starts, with no network:
    it must still be running after START_WAIT seconds (or have exited 0), and
    when the image has a HEALTHCHECK, that check must pass within HEALTH_WAIT.
    The problem strings name no detail that varies between runs, so a parent
    with the same problem compares equal (see ``engine.gates``).
    """
    name = f"pipeline-start-{secrets.token_hex(4)}"
    if command:
        try:
            out = docker("run", "--rm", "--network", "none", "--name", name, "--entrypoint", command[0], tag,
                         *command[1:], timeout=HEALTH_WAIT + 60)
        except subprocess.TimeoutExpired:
            docker("rm", "-f", name, timeout=60)
            return "the probe did not finish", f"{' '.join(command)} ran longer than {HEALTH_WAIT + 60:.0f} s"
        if out.returncode != 0:
            return "the probe fails", f"{' '.join(command)} exited {out.returncode}: {_tail(out.stderr or out.stdout)}"
        return "", f"probe {' '.join(command)} passed"
    started = docker("run", "-d", "--network", "none", "--name", name, tag, timeout=60)
    try:
        if started.returncode != 0:
            return "the container does not start", _tail(started.stderr)
        deadline = time.monotonic() + START_WAIT
        while True:
            state = docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name, timeout=30)
            status, _, code = state.stdout.strip().partition(" ")
            if status in ("exited", "dead"):
                if code == "0":
                    return "", "its command ran and exited 0"
                logs = docker("logs", "--tail", "5", name, timeout=30)
                return "the container exits with an error", f"exit {code}: {_tail(logs.stderr or logs.stdout, 3)}"
            if time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        check = _healthcheck(tag)
        if not check:
            return "", f"still running after {START_WAIT:g} s (no HEALTHCHECK)"
        deadline = time.monotonic() + HEALTH_WAIT
        while True:
            probe_run = docker("exec", name, *check, timeout=HEALTH_WAIT + 30)
            if probe_run.returncode == 0:
                return "", f"running, and its HEALTHCHECK ({' '.join(check)}) passes"
            if time.monotonic() >= deadline:
                return "the health check fails", f"{' '.join(check)}: {_tail(probe_run.stderr or probe_run.stdout)}"
            time.sleep(1)
    finally:
        docker("rm", "-f", name, timeout=60)


def verify_start(root: Path, ctx: Context, command: list[str] | None = None) -> tuple[str, str]:
    """Build ``ctx`` under ``root`` and start it: ("", how) when it works, else (the problem, its detail).

    A base image that can't be had is a "not verified" ("", reason): nothing was tried.
    """
    why = missing_base(ctx)
    if why:
        return "", f"not verified: {why}"
    tag = f"pipeline-start/{_subject(ctx).replace(' ', '-').replace('/', '-').replace(',', '').lower()}:{secrets.token_hex(3)}"
    seconds, error = build(root, ctx, tag)
    try:
        if seconds is None:
            return "the image does not build", error
        return start_check(tag, command)
    finally:
        docker("image", "rm", "-f", tag, timeout=60)
