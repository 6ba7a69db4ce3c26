"""Size rules: what ends up in the image (or in its layers) that it doesn't need; with their fixes.

Installs that ignore a lockfile (SZ005) are in ``size_lockfiles.py``."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from agent_pipelines.engine.domain import AlreadyResolved, Declined
from agent_pipelines.engine.finding import Applicability, Category, Severity
from agent_pipelines.pipelines.docker_optimization.fixes.edit import (
    apply_edits,
    dockerfile_now,
    lines_of,
    newline_of,
    verify,
)
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.model.shell import (
    APT_VALUE_OPTIONS,
    SYSTEM_MANAGERS,
    Segment,
    positionals,
    segments,
    verb,
)
from agent_pipelines.pipelines.docker_optimization.rules import Fix, Hit, rule
from agent_pipelines.pipelines.docker_optimization.rules.layers_runs import installs_with, manager_groups, merge_runs

if TYPE_CHECKING:  # annotations only: engine.artifacts loads pydantic, which `pipeline analyze` must not
    from agent_pipelines.engine.artifacts import Design, Task

APT_NO_RECOMMENDS_FIX = Fix("apt-no-recommends")
NO_APK_CACHE_FIX = Fix("no-apk-cache")
PURGE_APT_LISTS_FIX = Fix("purge-apt-lists")


# -- build toolchains in a single-stage image ---------------------------------------------

TOOLCHAIN = re.compile(
    r"^(?:gcc|g\+\+|cc|clang|make|cmake|build-essential|build-base|autoconf|automake|libtool"
    r"|pkg-config|pkgconf|linux-headers|(?:gcc|g\+\+|clang)-[\w.]+"
    r"|[\w.+]+(?:-[\w.+]+)*-(?:dev|devel))$"
)
SYSTEM_VALUE_OPTIONS = APT_VALUE_OPTIONS | {
    "--virtual",
    "--repository",
    "-X",
    "--root",
    "-p",
    "--arch",
    "--cache-dir",
    "--keys-dir",
}
INSTALL_VERBS = ("install", "add")
REMOVE_VERBS = ("purge", "remove", "autoremove", "del", "erase")


def package_name(spec: str) -> str:
    return re.split(r"[=<>~@:]", spec, maxsplit=1)[0]


def packages(seg: Segment) -> list[str]:
    """The packages a system package-manager command names after its verb."""
    return positionals(seg.args, SYSTEM_VALUE_OPTIONS)[1:]


def virtual_group(seg: Segment) -> str:
    """apk's `--virtual NAME` (also `-t NAME`, `--virtual=NAME`)."""
    for index, arg in enumerate(seg.args):
        if arg in ("--virtual", "-t") and seg.prog == "apk" and index + 1 < len(seg.args):
            return seg.args[index + 1]
        if arg.startswith("--virtual="):
            return arg.split("=", 1)[1]
    return ""


def toolchain_installed(df: Dockerfile, run: Instruction) -> list[str]:
    """Build-toolchain packages a RUN installs and doesn't remove again in the same RUN."""
    added: list[tuple[str, str]] = []
    removed: set[str] = set()
    for seg in segments(df, run):
        if seg.prog not in SYSTEM_MANAGERS:
            continue
        action = verb(seg, SYSTEM_VALUE_OPTIONS)
        if action in INSTALL_VERBS:
            group = virtual_group(seg)
            added += [(package_name(p), group) for p in packages(seg)]
        elif action in REMOVE_VERBS:
            removed |= {package_name(p) for p in packages(seg)}
    return [
        name
        for name, group in added
        if TOOLCHAIN.match(name) and name not in removed and not (group and group in removed)
    ]


# SZ001 (build-toolchain-in-final-image) and its multi-stage fix live in multistage.py.


# -- apt-get install without --no-install-recommends -----------------------------------------


def apt_installs_with_recommends(df: Dockerfile, run: Instruction) -> bool:
    configured = df.memo.get("install_recommends")
    if configured is None:  # per stage, the first RUN that mentions it (once per file, not once per RUN)
        configured = df.memo["install_recommends"] = {}
        for other in df.of("RUN"):
            if "Install-Recommends" in other.command:
                configured.setdefault(other.stage, other.start_line)
    if configured.get(run.stage, run.start_line + 1) <= run.start_line:
        return False  # the stage configures recommends itself (apt.conf or -o)
    return any(
        seg.prog in ("apt-get", "apt")
        and verb(seg, APT_VALUE_OPTIONS) == "install"
        and "--no-install-recommends" not in seg.args
        for seg in segments(df, run)
    )


@rule(
    "SZ002",
    "apt-install-recommends",
    Category.size,
    Severity.warning,
    "dockerfile",
    fix=APT_NO_RECOMMENDS_FIX,
    safety=Applicability.unsafe,
    phase="dockerfiles",
)
def apt_install_recommends(df: Dockerfile) -> Iterable[Hit]:
    """`apt-get install` without `--no-install-recommends`.

    Why: apt installs every "recommended" package by default: documentation,
    optional helpers, sometimes whole toolchains the image never uses (often
    tens to hundreds of megabytes).

    Example:
        RUN apt-get update && apt-get install -y curl

    Use instead:
        RUN apt-get update && apt-get install -y --no-install-recommends curl

    Fix: adds `--no-install-recommends` after `install`.

    Fix safety: unsafe, always. The flag changes the set of packages in the
    image, and what a recommended package provides is often what the build
    or the program needs: `gcc` without recommends drops `libc6-dev`, so
    compiling fails (`stdio.h: No such file`); `curl` without
    `ca-certificates` fails on https. Which packages a name recommends
    depends on the package index at build time, so no list written here can
    prove the flag changes nothing; the fix waits for `--unsafe-fixes`, and
    with `--verify-builds` the image must still build and start. Add the
    packages you relied on by name (`gcc libc6-dev`) before applying it.
    """
    for run in df.of("RUN"):
        if apt_installs_with_recommends(df, run):
            yield Hit(
                run.start_line,
                "apt-get install without --no-install-recommends: recommended packages "
                "the image doesn't need are installed too",
                run.original,
                run.end_line,
            )


# -- apk add without --no-cache -----------------------------------------------------------


def mount_targets(ins: Instruction) -> list[str]:
    return [m.get("target", m.get("dst", m.get("destination", ""))).rstrip("/") for m in ins.mounts()]


def removes(segs: list[Segment], prefix: str) -> bool:
    return any(seg.prog == "rm" and any(a.startswith(prefix) for a in seg.args) for seg in segs)


def apk_adds_with_cache(df: Dockerfile, run: Instruction) -> bool:
    if any(t.startswith("/var/cache/apk") for t in mount_targets(run)):
        return False
    segs = segments(df, run)
    if removes(segs, "/var/cache/apk"):
        return False
    return any(
        seg.prog == "apk" and verb(seg, SYSTEM_VALUE_OPTIONS) == "add" and "--no-cache" not in seg.args for seg in segs
    )


@rule(
    "SZ003",
    "apk-add-without-no-cache",
    Category.size,
    Severity.warning,
    "dockerfile",
    fix=NO_APK_CACHE_FIX,
    safety=Applicability.safe,
    phase="dockerfiles",
)
def apk_add_without_no_cache(df: Dockerfile) -> Iterable[Hit]:
    """`apk add` without `--no-cache`.

    Not flagged when the RUN has a cache mount on /var/cache/apk (the cache
    lives on the builder, not in the image) or removes /var/cache/apk itself.

    Why: apk keeps the package index it downloaded in /var/cache/apk, and
    the layer stores it in the image.

    Example:
        RUN apk add curl

    Use instead:
        RUN apk add --no-cache curl

    Fix safety: safe: `--no-cache` fetches the index for that command and
    installs the same packages; only the index files stay out of the image
    (a container that runs `apk add` without updating first would need
    `apk update`, as on any image built this way).
    """
    for run in df.of("RUN"):
        if apk_adds_with_cache(df, run):
            yield Hit(
                run.start_line,
                "apk add without --no-cache: the package index stays in the layer",
                run.original,
                run.end_line,
            )


# -- models and data downloaded at build time ----------------------------------------------

_ARTIFACT_EXT = (
    r"\.(?:bin|safetensors|pt|pth|onnx|ckpt|h5|hdf5|gguf|ggml|pb|tflite|pkl|pickle|joblib|npy|npz"
    r"|parquet|arrow|tfrecord|mlmodel|caffemodel|weights)"
)
ARTIFACT_URL = re.compile(rf"^(?:https?|ftp)://\S+?{_ARTIFACT_EXT}(?:[?#]\S*)?$", re.IGNORECASE)
HUB_URL = re.compile(r"^https?://(?:huggingface\.co|hf\.co)/", re.IGNORECASE)
DOWNLOADERS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), label)
    for p, label in (
        (r"(?<![\w-])huggingface-cli\s+download\b", "huggingface-cli download"),
        (r"(?<![\w-])hf\s+download\b", "hf download"),
        (r"\b(?:from_pretrained|snapshot_download|hf_hub_download)\s*\(", "a Hugging Face hub download in Python"),
        (r"\bload_dataset\s*\(", "datasets.load_dataset"),
        (r"\btorch\.hub\.load\w*\s*\(", "torch.hub"),
        (r"-m\s+spacy\s+download\b", "spacy download"),
        (r"-m\s+nltk\.downloader\b|\bnltk\.download\s*\(", "an nltk download"),
        (r"(?<![\w-])gsutil\s+(?:-\S+\s+)*(?:cp|rsync)\b", "gsutil cp"),
        (r"(?<![\w-])gcloud\s+storage\s+(?:cp|rsync)\b", "gcloud storage cp"),
        (r"(?<![\w-])aws\s+s3\s+(?:cp|sync)\b", "aws s3 cp"),
        (r"(?<![\w-])azcopy\s+(?:copy|cp|sync)\b", "azcopy"),
        (r"(?<![\w-])dvc\s+pull\b", "dvc pull"),
        (r"(?<![\w-])git\s+lfs\s+pull\b", "git lfs pull"),
        (r"(?<![\w-])kaggle\s+(?:datasets|competitions|models)\s+download\b", "a kaggle download"),
    )
)


def artifact_url(url: str) -> bool:
    return bool(ARTIFACT_URL.match(url) or HUB_URL.match(url))


def downloads(df: Dockerfile, ins: Instruction) -> str:
    """What model or data download an instruction makes ("" when none)."""
    if ins.cmd == "ADD":
        urls = [src for src in ins.value[:-1] if artifact_url(src)]
        return f"ADD {urls[0]}" if urls else ""
    if ins.cmd != "RUN":
        return ""
    for pattern, label in DOWNLOADERS:
        if pattern.search(ins.command):
            return label
    for seg in segments(df, ins):
        if seg.prog in ("curl", "wget"):
            urls = [a for a in seg.args if artifact_url(a)]
            if urls:
                return f"{seg.prog} {urls[0]}"
    return ""


@rule("SZ004", "model-download-at-build-time", Category.size, Severity.warning, "dockerfile")
def model_download_at_build_time(df: Dockerfile) -> Iterable[Hit]:
    """A model or data set is downloaded while the image builds.

    Fires on `huggingface-cli download`, `from_pretrained(...)` and other
    hub downloads in `python -c`, `gsutil cp`, `aws s3 cp`, `dvc pull`,
    `git lfs pull`, and curl/wget/ADD of URLs on huggingface.co or ending
    in a model or data extension (.safetensors, .bin, .onnx, .gguf,
    .parquet...).

    Why: weights and data sets weigh gigabytes; baked into a layer they are
    pushed and pulled with every image version, rebuilt whenever an earlier
    layer changes, and tie the model version to the code version.

    Example:
        RUN huggingface-cli download org/model --local-dir /models/model

    Use instead:
        mount the models at runtime (a volume, an object-store sync at start)
        or fetch them in the entrypoint into a cache volume.
    """
    for ins in df.of("RUN", "ADD"):
        found = downloads(df, ins)
        if found:
            yield Hit(
                ins.start_line,
                f"{found} at build time: the artifact is stored in the image and fetched again on every rebuild",
                ins.original,
                ins.end_line,
            )


# -- apt lists left in the layer --------------------------------------------------------------


def apt_lists_left(df: Dockerfile, run: Instruction) -> bool:
    if any(t.startswith("/var/lib/apt") for t in mount_targets(run)):
        return False
    segs = segments(df, run)
    updates = any(seg.prog in ("apt-get", "apt") and verb(seg, APT_VALUE_OPTIONS) == "update" for seg in segs)
    return updates and not removes(segs, "/var/lib/apt/lists")


@rule(
    "SZ006",
    "apt-lists-not-cleaned",
    Category.size,
    Severity.warning,
    "dockerfile",
    fix=PURGE_APT_LISTS_FIX,
    safety=Applicability.safe,
    phase="dockerfiles",
)
def apt_lists_not_cleaned(df: Dockerfile) -> Iterable[Hit]:
    """`apt-get update` without `rm -rf /var/lib/apt/lists/*` in the same RUN.

    Not flagged when the RUN has a mount on /var/lib/apt (a cache mount
    keeps the lists on the builder, out of the image).

    Why: the package lists (tens of megabytes) stay in the layer; removing
    them in a later RUN doesn't shrink the image, since the earlier layer
    still holds them.

    Example:
        RUN apt-get update && apt-get install -y --no-install-recommends curl

    Use instead:
        RUN apt-get update && apt-get install -y --no-install-recommends curl \\
            && rm -rf /var/lib/apt/lists/*

    Fix: appends ` && rm -rf /var/lib/apt/lists/*` to the RUN. When the
    update sits alone in its RUN and the next RUN installs from the lists,
    the two are merged first (as LY002's fix does): cleaning the lists in
    the update's RUN would break that install. Any other later install
    that relies on the lists makes the fix refuse.

    Fix safety: safe: the lists are apt's download index, not installed
    packages; the same packages are installed, and a later RUN that needs
    the lists makes the fix refuse (or merge first).
    """
    for run in df.of("RUN"):
        if apt_lists_left(df, run):
            yield Hit(
                run.start_line,
                "apt-get update without removing /var/lib/apt/lists in the same RUN: "
                "the package lists stay in the layer",
                run.original,
                run.end_line,
            )


# -- fixes -----------------------------------------------------------------------------------------------
# Size fixes: package-manager flags that keep caches and extras out of the image, npm ci, apt list cleanup.
#
# They edit only the RUNs their rule flags, in place: a flag inserted after
# the command's verb, `npm install` replaced by `npm ci`, a cleanup appended
# to the RUN's last line.


_SEGMENT_END = re.compile(r"&&|\|\||;|\|")
_CONTINUATION = re.compile(r"\\[ \t]*(?:\r\n|\n|\r)")


def program(name: str) -> re.Pattern[str]:
    """A program word (also /usr/bin/name), at the end of a word."""
    return re.compile(rf"(?<![\w.$/-])(?:/[\w./-]*/)?{name}(?=[\s\\;&|)]|$)")


def segment_end(source: str, start: int) -> int:
    found = _SEGMENT_END.search(source, start)
    return found.start() if found else len(source.rstrip("\r\n"))


def add_after_verb(source: str, prog: re.Pattern[str], verb: str, present: re.Pattern[str], flag: str) -> str:
    """``source`` with ``flag`` after ``verb`` in each ``prog`` command that lacks it."""
    verb_pattern = re.compile(rf"(?<![\w.-]){verb}(?![\w.-])")
    out = source
    for found in reversed(list(prog.finditer(source))):
        end = segment_end(source, found.end())
        at = verb_pattern.search(source, found.end(), end)
        if at is None or present.search(source, found.start(), end):
            continue
        out = out[: at.end()] + " " + flag + out[at.end() :]
    return out


def flag_fix(
    df: Dockerfile, runs: list[Instruction], prog: re.Pattern[str], verb: str, present: re.Pattern[str], flag: str
) -> str:
    edits = []
    for run in runs:
        source = df.source(run)
        edited = add_after_verb(source, prog, verb, present, flag)
        if edited == source:
            raise Declined(f"line {run.start_line}: can't find where to add {flag} (a variable or a quoted command?)")
        edits.append((run.start_line, run.end_line, lines_of(edited)))
    return apply_edits(df.text, edits)


def _runs(df: Dockerfile, test: Callable[[Dockerfile, Instruction], bool]) -> list[Instruction]:
    found = [run for run in df.of("RUN") if test(df, run)]
    for run in found:
        if run.json:
            raise Declined(f"line {run.start_line} is a JSON-form RUN; left as is")
    return found


@APT_NO_RECOMMENDS_FIX.applies("Install apt packages without recommends in {file}")
def apt_no_recommends(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_now(project, task)
    runs = _runs(df, apt_installs_with_recommends)
    if not runs:
        raise AlreadyResolved(f"{task.file} has no apt-get install with recommends left")
    text = flag_fix(
        df,
        runs,
        program(r"apt(?:-get)?"),
        "install",
        re.compile(r"--no-install-recommends|Install-Recommends"),
        "--no-install-recommends",
    )
    return {task.file: verify(task.file, text, apt_install_recommends, "SZ002")}


@NO_APK_CACHE_FIX.applies("Add packages with apk --no-cache in {file}")
def apk_no_cache(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_now(project, task)
    runs = _runs(df, apk_adds_with_cache)
    if not runs:
        raise AlreadyResolved(f"{task.file} has no apk add without --no-cache left")
    text = flag_fix(df, runs, program("apk"), "add", re.compile(r"--no-cache\b"), "--no-cache")
    return {task.file: verify(task.file, text, apk_add_without_no_cache, "SZ003")}


# -- SZ006: remove the apt lists in the RUN that downloads them ------------------------------------

CLEANUP = " && rm -rf /var/lib/apt/lists/*"


def with_cleanup(lines: list[str]) -> list[str]:
    last = lines[-1]
    nl = newline_of(last)
    return lines[:-1] + [last[: len(last) - len(nl)].rstrip(" \t") + CLEANUP + nl]


def _relies_on_lists(df: Dockerfile, run: Instruction) -> bool:
    """A RUN that installs with apt from lists an earlier RUN downloaded."""
    updates = any(s.prog in ("apt-get", "apt") and "update" in s.args for s in segments(df, run))
    cached = any(t.startswith("/var/lib/apt") for t in mount_targets(run))
    return installs_with(df, run, "apt-get") and not updates and not cached


@PURGE_APT_LISTS_FIX.applies("Remove the apt package lists in the RUN that downloads them in {file}")
def apt_lists_cleanup(project: Project, task: Task, design: Design) -> dict[str, str]:
    df = dockerfile_now(project, task)
    targets = [run for run in df.of("RUN") if apt_lists_left(df, run)]
    if not targets:
        raise AlreadyResolved(f"{task.file} has no apt-get update without cleanup left")
    groups = manager_groups(df)
    merged: dict[int, list[Instruction]] = {}
    alone: list[Instruction] = []
    for run in targets:
        if run.json:
            raise Declined(f"line {run.start_line} is a JSON-form RUN; left as is")
        later = [r for r in df.of("RUN") if r.stage == run.stage and r.start_line > run.start_line]
        relying = [r for r in later if _relies_on_lists(df, r)]
        if not relying:
            alone.append(run)
            continue
        group = next((g for g in groups if run in g), [])
        if not group or any(r not in group for r in relying):
            raise Declined(
                f"cleaning the lists at line {run.start_line} would break the apt-get install at line "
                f"{relying[0].start_line}, which relies on them; merge the update into that RUN first"
            )
        merged[group[0].start_line] = group
    covered = [(g[0].start_line, g[-1].end_line, with_cleanup(merge_runs(df, g))) for g in merged.values()]
    covered += [
        (run.start_line, run.end_line, with_cleanup(lines_of(df.source(run))))
        for run in alone
        if not any(g[0].start_line <= run.start_line <= g[-1].end_line for g in merged.values())
    ]
    text = apply_edits(df.text, covered)
    return {task.file: verify(task.file, text, apt_lists_not_cleaned, "SZ006")}
