"""Multi-stage rewrites: SZ001 (a build toolchain in a single-stage image) and its fix, in one place.

The rule finds a compiler toolchain (gcc, build-essential, *-dev packages)
installed in the only stage of an image that runs a program. The fix moves
the toolchain and the dependency install into a builder stage and copies
only what the install produced into the runtime stage:

- Python (a ``python`` base image, dependencies installed with pip): the
  builder creates a venv in /opt/venv and pip installs into it; the runtime
  stage copies /opt/venv and puts its bin/ first on PATH.
- Node (a ``node`` base image, dependencies installed with ``npm ci``): the
  builder runs ``npm ci --omit=dev`` (production dependencies only); the
  runtime stage copies node_modules.

The rewrite is deterministic only where the pattern is certain; anything else
is declined with the reason (a runtime library a *-dev package implies, a RUN
between the toolchain and the install, an editable install, ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from agent_pipelines.engine.domain import AlreadyResolved, Declined, FixError
from agent_pipelines.engine.finding import Applicability, Category, Severity
from agent_pipelines.pipelines.docker_optimization.fixes.edit import dockerfile_now, newline_of
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import resolve_path as resolve
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.model.shell import Segment, segments
from agent_pipelines.pipelines.docker_optimization.rules import Fix, Hit, rule
from agent_pipelines.pipelines.docker_optimization.rules.layers import is_manifest
from agent_pipelines.pipelines.docker_optimization.rules.size import package_name, packages, toolchain_installed

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Design, Task

MULTISTAGE_FIX = Fix("multistage")
VENV = "/opt/venv"
# Packages that only build: nothing the program needs at run time comes with them. A *-dev package
# other than these names a library whose runtime half (libpq-dev -> libpq5) the runtime stage would need.
BUILD_ONLY = re.compile(
    r"^(?:gcc|g\+\+|cc|clang|make|cmake|build-essential|autoconf|automake|libtool|pkg-config"
    r"|pkgconf|libc6-dev|libc-dev|linux-libc-dev|python3-dev|python3\.\d+-dev|python-dev"
    r"|(?:gcc|g\+\+|clang)-[\w.]+)$"
)
NODE_GYP = {"python3", "python-is-python3"}  # node-gyp runs Python to build native modules
APT_DOCKER_CLEAN = "/etc/apt/apt.conf.d/docker-clean"
PIP_ELSEWHERE = {"--user", "--prefix", "--target", "-t", "--root", "-e", "--editable"}
NPM_PRODUCTION = ("--omit=dev", "--only=production", "--only=prod", "--production")


@rule(
    "SZ001",
    "build-toolchain-in-final-image",
    Category.size,
    Severity.warning,
    "dockerfile",
    fix=MULTISTAGE_FIX,
    safety=Applicability.unsafe,
    phase="dockerfiles",
)
def build_toolchain_in_final_image(df: Dockerfile) -> Iterable[Hit]:
    """A single-stage build installs a compiler toolchain (gcc, build-essential, *-dev packages, make).

    Packages the same RUN removes again (`apk del .build-deps`,
    `apt-get purge gcc`) are not counted. An image that declares no CMD or
    ENTRYPOINT is a tool image run with a command (`docker run gen protoc
    ...`, a code generator): the toolchain is what it is for, so it is left
    alone.

    Why: the toolchain is needed to build wheels or native modules, not to
    run them; in a single-stage build it ships in the image (often hundreds
    of megabytes, and a larger attack surface).

    Example:
        FROM python:3.12-slim
        RUN apt-get update && apt-get install -y build-essential
        COPY requirements.txt .
        RUN pip install -r requirements.txt
        COPY . .
        CMD ["python", "app.py"]

    Use instead:
        FROM python:3.12-slim AS builder
        RUN python -m venv /opt/venv
        ENV PATH="/opt/venv/bin:$PATH"
        RUN apt-get update && apt-get install -y build-essential
        COPY requirements.txt .
        RUN pip install -r requirements.txt

        FROM python:3.12-slim
        COPY --from=builder /opt/venv /opt/venv
        ENV PATH="/opt/venv/bin:$PATH"
        COPY . .
        CMD ["python", "app.py"]

    Fix: for a `python` base image whose dependencies pip installs, the
    builder stage installs them into a venv (/opt/venv) and the runtime stage
    copies the venv; for a `node` base image with `npm ci`, the builder runs
    `npm ci --omit=dev` and the runtime stage copies node_modules. The
    toolchain RUN, the install and the COPYs before it go to the builder;
    everything else stays in the runtime stage, in order. It declines (with
    the reason) where the pattern is not certain: a *-dev package whose
    runtime library the program would need (libpq-dev needs libpq5), a RUN
    other than the toolchain and the install before the install, pip
    `--user`/`--prefix`/`-e`, a CMD that names /usr/local/bin/python, a later
    RUN that may need npm's dev dependencies.

    Fix safety: unsafe: what the program finds at run time changes (the
    toolchain is gone, Python packages live in a venv, Node dev dependencies
    are left out), and a program that compiles or imports something at run
    time breaks. It waits for `--unsafe-fixes`; with `--verify-builds` the
    image must build and pass its HEALTHCHECK (or the configured probe), and
    the reviewer reports the image size before and after (`docker image
    inspect`).
    """
    if len(df.stages) != 1 or not (df.of("CMD") or df.of("ENTRYPOINT")):
        return
    for run in df.of("RUN"):
        found = toolchain_installed(df, run)
        if found:
            yield Hit(
                run.start_line,
                f"build toolchain installed in the only stage: {', '.join(dict.fromkeys(found))} "
                "ship in the image; build in a separate stage",
                run.original,
                run.end_line,
            )


# -- the fix ------------------------------------------------------------------------------


def _toolchain_run(df: Dockerfile, run: Instruction, node: bool) -> list[str] | None:
    """The packages of a RUN that only installs build packages with apt (None: it isn't such a RUN).

    Declined when it installs a toolchain beside something the program may need at run time.
    """
    if not toolchain_installed(df, run):
        return None
    names: list[str] = []
    for seg in segments(df, run):
        if seg.prog in ("apt-get", "apt") and "install" in seg.args:
            names += [package_name(p) for p in packages(seg)]
        elif not _apt_housekeeping(seg):
            raise Declined(
                f"line {run.start_line} installs the toolchain and also runs `{seg.text()}`; which stage "
                "that belongs to is not certain",
                "split that RUN, then apply the fix",
            )
    if not names:
        raise Declined(
            f"line {run.start_line} installs the toolchain with a package manager other than apt",
            "move the toolchain to a builder stage by hand",
        )
    runtime = [n for n in names if not BUILD_ONLY.match(n) and not (node and n in NODE_GYP)]
    if runtime:
        raise Declined(
            f"line {run.start_line} installs {', '.join(runtime)}: the program may need "
            f"{'it' if len(runtime) == 1 else 'them'} (or the runtime library a -dev package "
            "stands for) at run time, and which runtime package that is is not certain",
            "install the runtime libraries in the runtime stage by name (libpq-dev -> libpq5) "
            "and write the builder stage by hand",
        )
    return names


def _apt_housekeeping(seg: Segment) -> bool:
    if seg.prog in ("apt-get", "apt"):
        args = [a for a in seg.args if not a.startswith("-")]
        return bool(args) and args[0] in ("update", "clean", "install")
    # the list cleanup, and the cache-mount recipe's removal of docker-clean (so apt keeps what it downloads)
    return seg.prog == "rm" and all(
        a.startswith(("-", "/var/lib/apt/lists")) or a == APT_DOCKER_CLEAN for a in seg.args
    )


def _pip_run(df: Dockerfile, run: Instruction) -> bool:
    """A RUN that only pip installs (declined when it installs anywhere but the environment's site-packages)."""
    segs = segments(df, run)
    pip = [s for s in segs if _pip_args(s) is not None]
    if not pip:
        return False
    for seg in segs:
        args = _pip_args(seg)
        if args is None:
            raise Declined(
                f"line {run.start_line} runs `{seg.text()}` beside pip install; where it belongs is not certain",
                "split that RUN, then apply the fix",
            )
        elsewhere = [a for a in args if a.split("=", 1)[0] in PIP_ELSEWHERE]
        if elsewhere:
            raise Declined(
                f"line {run.start_line}: `pip install {elsewhere[0]}` installs outside the environment a "
                "venv would copy",
                "install into a venv in a builder stage by hand",
            )
        if seg.argv[0].startswith("/"):
            raise Declined(
                f"line {run.start_line} runs {seg.argv[0]}, not the pip on PATH the venv provides",
                "call pip by name, then apply the fix",
            )
    return True


def _pip_args(seg: Segment) -> tuple[str, ...] | None:
    if re.fullmatch(r"pip3?(?:\.\d+)?", seg.prog) and seg.args[:1] == ("install",):
        return seg.args[1:]
    if re.fullmatch(r"python3?(?:\.\d+)?", seg.prog) and seg.args[:3] == ("-m", "pip", "install"):
        return seg.args[3:]
    return None


def _npm_ci_run(df: Dockerfile, run: Instruction) -> bool:
    segs = segments(df, run)
    if not any(s.prog == "npm" and s.args[:1] == ("ci",) for s in segs):
        return False
    for seg in segs:
        if not (seg.prog == "npm" and (seg.args[:1] == ("ci",) or seg.args[:2] == ("cache", "clean"))):
            raise Declined(
                f"line {run.start_line} runs `{seg.text()}` beside npm ci; where it belongs is not certain",
                "split that RUN, then apply the fix",
            )
    return True


def _chunks(df: Dockerfile) -> tuple[str, list[tuple[Instruction, str]]]:
    """The text before the first instruction, and each instruction with the comments and blank lines above it."""
    lines = df.lines
    head_end = df.instructions[0].start_line - 1
    out, prev = [], head_end
    for ins in df.instructions:
        out.append((ins, "".join(lines[prev : ins.end_line])))
        prev = ins.end_line
    tail = "".join(lines[prev:])
    if tail.strip():
        out[-1] = (out[-1][0], out[-1][1] + tail)
    return "".join(lines[:head_end]), out


def rewrite(df: Dockerfile) -> str:
    """The two-stage text of a single-stage ``df``; Declined (with why and what to do) where not certain."""
    nl = newline_of(df.lines[0] if df.lines else "\n")
    header, chunks = _chunks(df)
    before = [(i, t) for i, t in chunks if i.stage < 0]  # global ARGs
    stage = [(i, t) for i, t in chunks if i.stage == 0]
    frm = stage[0][0]
    base = frm.value[0] if frm.value else ""
    image = base.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    if image not in ("python", "node"):
        raise Declined(
            f"the base image {base} is neither a python nor a node image: how its dependencies are "
            "installed and where they land is not certain",
            "write the builder stage by hand",
        )
    node = image == "node"
    body = stage[1:]
    deps = [n for n, (i, _t) in enumerate(body) if i.cmd == "RUN" and (_npm_ci_run(df, i) if node else _pip_run(df, i))]
    if not deps:
        raise Declined(
            f"no {'npm ci' if node else 'pip install'} RUN in {df.path}: what the toolchain builds is not certain",
            "write the builder stage by hand",
        )
    last = deps[-1]
    tools = [n for n, (i, _t) in enumerate(body) if i.cmd == "RUN" and _toolchain_run(df, i, node) is not None]
    if any(n > last for n in tools):
        raise Declined(
            "the toolchain is installed after the dependency install: the program may use it at run time",
            "move the toolchain to a builder stage by hand",
        )
    for n, (ins, _t) in enumerate(body[: last + 1]):
        if ins.cmd == "RUN" and n not in deps and n not in tools:
            raise Declined(
                f"line {ins.start_line} runs something before the dependency install that is neither the "
                "toolchain nor the install: whether the runtime stage needs it is not certain",
                "move it after the install or write the stages by hand",
            )
        if ins.cmd in ("USER", "ONBUILD") or ins.cmd in ("COPY", "ADD") and ins.flag("from"):
            raise Declined(
                f"line {ins.start_line} ({ins.cmd}) before the dependency install: not certain in a builder stage",
                "write the builder stage by hand",
            )
    if not node:
        for ins in df.of("CMD", "ENTRYPOINT", "HEALTHCHECK"):
            if re.search(r"/usr(?:/local)?/bin/python", ins.original):
                raise Declined(
                    f"line {ins.start_line} runs Python by absolute path: it would not see the venv",
                    "call python by name, then apply the fix",
                )
        if VENV in df.text:
            raise Declined(f"{df.path} already uses {VENV}", "write the builder stage by hand")
    workdir = ""
    if node:
        seg = next(s for s in segments(df, body[last][0]) if s.prog == "npm" and s.args[:1] == ("ci",))
        workdir = seg.cwd
        if not workdir.startswith("/"):
            raise Declined(
                "the directory npm ci runs in is not known (a variable or no WORKDIR)",
                "write the builder stage by hand",
            )
        later = [
            i
            for i, _t in body[last + 1 :]
            if i.cmd == "RUN" and any(s.prog in ("npm", "npx", "node", "yarn") for s in segments(df, i))
        ]
        if later:
            raise Declined(
                f"line {later[0].start_line} runs node tooling after npm ci: it may need the dev "
                "dependencies a production install leaves out",
                "write the builder stage by hand",
            )
    names = {s.name for s in df.stages}
    builder = next(n for n in ("builder", "build-deps", "pipeline-builder") if n not in names)
    if frm.start_line != frm.end_line:
        raise Declined(f"the FROM on line {frm.start_line} spans lines", "write the builder stage by hand")
    *above, from_line = stage[0][1].splitlines(keepends=True)  # comments above FROM stay with the builder
    from_line = from_line.rstrip("\r\n")
    if len(frm.value) >= 3:
        builder_from = re.sub(r"(?i)(\s+as\s+)\S+\s*$", rf"\g<1>{builder}", from_line)
    else:
        builder_from = from_line.rstrip() + f" AS {builder}"

    out_builder = [header, *(t for _i, t in before), *above, builder_from + nl]
    if not node:
        out_builder += [f"RUN python -m venv {VENV}{nl}", f'ENV PATH="{VENV}/bin:$PATH"{nl}']
    for n, (ins, text) in enumerate(body[: last + 1]):
        if node and n in deps and not any(f in ins.command for f in NPM_PRODUCTION):
            text = re.sub(r"(npm\s+ci)(?=\s|$)", r"\1 --omit=dev", text, count=1)
        out_builder.append(text)

    runtime = [nl, from_line + nl]
    if not node:
        runtime += [f"COPY --from={builder} {VENV} {VENV}{nl}", f'ENV PATH="{VENV}/bin:$PATH"{nl}']
    for n, (ins, text) in enumerate(body[: last + 1]):
        if n in tools:
            continue
        if n in deps:
            if node:
                modules = resolve(workdir, "node_modules")
                runtime.append(f"COPY --from={builder} {modules} {modules}{nl}")
            continue
        if not node and ins.cmd in ("COPY", "ADD") and _manifest_only(ins):
            continue  # requirement files: the install read them, the runtime does not
        runtime.append(text)
    runtime += [t for _i, t in body[last + 1 :]]
    text = "".join(out_builder) + "".join(runtime)
    if not text.endswith(("\n", "\r")):
        text += nl
    return text


def _manifest_only(copy: Instruction) -> bool:
    srcs = [v for v in copy.value[:-1]]
    return bool(srcs) and all(is_manifest(s.rsplit("/", 1)[-1]) for s in srcs)


@MULTISTAGE_FIX.applies("Build the dependencies of {file} in a builder stage; ship only what they installed")
def multistage(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_now(project, task)
    if not list(build_toolchain_in_final_image(df)):
        raise AlreadyResolved(f"{task.file} no longer installs a toolchain in a single stage")
    text = rewrite(df)
    again = Dockerfile.parse(task.file, text)
    if again.error or len(again.stages) != 2:
        raise FixError(f"the rewritten {task.file} does not parse as two stages: {again.error}")
    return {task.file: text}
