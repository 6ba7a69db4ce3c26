"""Which programs an image's final stage has: its base image's family, plus what the Dockerfile adds.

Used by rules that run a program inside the image (a HEALTHCHECK's curl, a
compose healthcheck's wget) to ask "is it there?" without building:

    tools = tools_in_final_stage(df)
    tools.has("curl")   # True, False, or None when the base image is unknown

The answer starts from a small table of base-image families (below), then
follows the stage chain (``FROM builder`` inherits builder's programs) and
replays, in order, what each stage's RUNs install or remove with
apt-get/apt/apk/dnf/yum/microdnf, and the programs COPY/ADD put in a bin
directory. Anything the table doesn't know makes ``has`` answer None for
programs the Dockerfile doesn't install itself: unknown is not absent.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field

from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile, Instruction

# Base-image families: (family, repository, tag variant, os, programs). The first row whose
# repository matches and whose variant regex is found in the tag wins ("" matches any tag).
# "os" says how to add packages and users: "debian" (apt-get, useradd), "alpine" (apk, adduser -S),
# "" (none: no shell or package manager). Programs are what the official images ship on PATH.
_DEBIAN = frozenset({"sh", "bash", "apt-get", "useradd"})
_ALPINE = frozenset({"sh", "wget", "apk", "adduser"})  # busybox: wget yes, curl no
_BUILDPACK = frozenset({"curl", "wget", "git"})  # non-slim python/node: buildpack-deps
FAMILIES: tuple[tuple[str, str, str, str, frozenset[str]], ...] = (
    ("python-alpine", "python", r"alpine", "alpine", _ALPINE | {"python", "python3", "pip"}),
    ("python-slim", "python", r"slim", "debian", _DEBIAN | {"python", "python3", "pip"}),
    ("python", "python", "", "debian", _DEBIAN | _BUILDPACK | {"python", "python3", "pip"}),
    ("node-alpine", "node", r"alpine", "alpine", _ALPINE | {"node", "npm", "npx"}),
    ("node-slim", "node", r"slim", "debian", _DEBIAN | {"node", "npm", "npx"}),
    ("node", "node", "", "debian", _DEBIAN | _BUILDPACK | {"node", "npm", "npx"}),
    ("debian", "debian", "", "debian", _DEBIAN),  # slim or not: neither curl nor wget
    ("ubuntu", "ubuntu", "", "debian", _DEBIAN),
    ("alpine", "alpine", "", "alpine", _ALPINE),
    ("busybox", "busybox", "", "", frozenset({"sh", "wget"})),
    ("scratch", "scratch", "", "", frozenset()),
)

# Package names whose program is called something else.
PACKAGE_PROGRAMS: dict[str, tuple[str, ...]] = {
    "nodejs": ("node",),
    "python3": ("python3",),
    "python-is-python3": ("python",),
    "python3-pip": ("pip3",),
    "py3-pip": ("pip3", "pip"),
    "netcat-openbsd": ("nc",),
    "netcat-traditional": ("nc",),
    "iputils-ping": ("ping",),
    "shadow": ("useradd",),
    "passwd": ("useradd",),
}

_INSTALL = re.compile(
    r"\b(?:apt-get|apt|aptitude|dnf|yum|microdnf)\s+(?:-\S+\s+)*install\s+([^;&|]*)"
    r"|\bapk\s+(?:-\S+\s+)*add\s+([^;&|]*)"
)
_REMOVE = re.compile(
    r"\b(?:apt-get|apt|aptitude|dnf|yum|microdnf)\s+(?:-\S+\s+)*(?:remove|purge|erase)\s+([^;&|]*)"
    r"|\bapk\s+(?:-\S+\s+)*del\s+([^;&|]*)"
)
_PIP = re.compile(r"\b(?:pip3?|python3?(?:\.\d+)?\s+-m\s+pip)\s+install\s+([^;&|]*)")
_VIRTUAL = re.compile(r"(?<!\S)(?:--virtual|-t)[=\s]+(\S+)")
_VALUE_FLAGS = {
    "-o",
    "--option",
    "-t",
    "--target-release",
    "--virtual",
    "-X",
    "--repository",
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-e",
    "--editable",
    "-i",
    "--index-url",
    "--extra-index-url",
    "--setopt",
    "--enablerepo",
    "--disablerepo",
}
_VERSION = re.compile(r"[=~<>!].*$")
_BIN_DIR = re.compile(r"/s?bin(?:/|$)")
_ARG_REF = re.compile(r"\$(?:\{(\w+)(?::?-([^}]*))?\}|(\w+))")


@dataclass(frozen=True, eq=False)
class Tools:
    """The programs one stage has: its base family's, then what its stage chain adds or removes."""

    image: str = ""  # the external image the chain starts from, after ARG defaults
    family: str = ""  # the FAMILIES row that matched; "" = unknown base image
    os: str = ""  # "debian", "alpine" or "" (see FAMILIES)
    base: frozenset[str] = frozenset()
    changes: dict[str, bool] = field(default_factory=dict)  # program -> installed (True) / removed (False)
    pip_packages: frozenset[str] = frozenset()
    opaque: bool = False  # a whole bin directory was copied in: anything may be there

    def has(self, name: str) -> bool | None:
        """True if the final image has ``name`` on PATH, False if not, None when it can't be told."""
        if name in self.changes:
            return self.changes[name]
        if name in self.base:
            return True
        if not self.family or self.opaque:
            return None
        return False


def repository_and_tag(ref: str) -> tuple[str, str, str]:
    """(repository, tag, digest) of an image reference, the repository without docker.io/library/."""
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = name[colon + 1 :] if colon > slash else ""
    repo = name[:colon] if colon > slash else name
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix) :]
    if repo.startswith("library/"):
        repo = repo[len("library/") :]
    return repo.lower(), tag, digest


def global_args(df: Dockerfile) -> dict[str, str]:
    """ARG defaults declared before the first FROM (the only ones FROM can use)."""
    found = {}
    for ins in df.instructions:
        if ins.stage == -1 and ins.cmd == "ARG":
            for item in ins.value:
                name, eq, default = item.partition("=")
                if eq:
                    found[name] = default.strip("\"'")
    return found


def base_image(df: Dockerfile, ref: str) -> str:
    """A FROM reference with global ARG defaults substituted ("" if a variable has no default)."""
    defaults = global_args(df)

    def value(m: re.Match[str]) -> str:
        found = defaults.get(m.group(1) or m.group(3))
        return found if found else m.group(2) if m.group(2) is not None else "\0"

    resolved = _ARG_REF.sub(value, ref)
    return "" if "\0" in resolved or "$" in resolved else resolved


def family_of(image: str) -> tuple[str, str, frozenset[str]]:
    """(family, os, programs) from the FAMILIES table; ("", "", {}) for an image it doesn't list."""
    repo, tag, _ = repository_and_tag(image)
    for family, repository, variant, os_name, programs in FAMILIES:
        if repo == repository and (not variant or re.search(variant, tag)):
            return family, os_name, programs
    return "", "", frozenset()


def _packages(args: str) -> list[str]:
    try:
        words = shlex.split(args)
    except ValueError:
        words = args.split()
    out, skip = [], False
    for word in words:
        if skip:
            skip = False
            continue
        if word in _VALUE_FLAGS:
            skip = True
            continue
        if word.startswith("-") or "/" in word or "$" in word:
            continue
        out.append(_VERSION.sub("", word))
    return [p for p in out if p]


def _programs(package: str) -> tuple[str, ...]:
    return PACKAGE_PROGRAMS.get(package, (package,))


def _replay_run(ins: Instruction, changes: dict[str, bool], pip: set[str], virtual: dict[str, list[str]]) -> None:
    """Apply a RUN's installs and removals in order (``apk add --virtual NAME`` groups are removed by NAME)."""
    events = []
    for m in _INSTALL.finditer(ins.command):
        packages = _packages(m.group(1) or m.group(2) or "")
        group = _VIRTUAL.search(m.group(2) or "")
        if group:
            virtual[group.group(1)] = packages
        events.append((m.start(), True, packages))
    for m in _REMOVE.finditer(ins.command):
        named = _packages(m.group(1) or m.group(2) or "")
        events.append((m.start(), False, [p for n in named for p in virtual.get(n, [n])]))
    for _, installed, packages in sorted(events, key=lambda e: e[0]):
        for package in packages:
            for program in _programs(package):
                changes[program] = installed
    for m in _PIP.finditer(ins.command):
        pip.update(_packages(m.group(1)))


def _replay_copy(ins: Instruction, changes: dict[str, bool]) -> bool:
    """Record programs a COPY/ADD puts in a bin directory; True if it copies a whole bin directory."""
    if len(ins.value) < 2:
        return False
    *sources, dest = ins.value
    if not _BIN_DIR.search(dest):
        return False
    if len(sources) == 1 and not dest.endswith("/"):
        changes[posixpath.basename(dest)] = True
        return False
    opaque = False
    for src in sources:
        name = posixpath.basename(src.rstrip("/"))
        if src.endswith("/") or name in ("bin", "sbin", ".") or any(ch in name for ch in "*?["):
            opaque = True
        elif name:
            changes[name] = True
    return opaque


def parent_stage(df: Dockerfile, index: int) -> int | None:
    """The earlier stage that stage ``index`` is built ``FROM``, or None for an external image."""
    return df.parent(index)


def stage_chain(df: Dockerfile, index: int) -> list[int]:
    """Stage ``index`` and the stages it is built FROM, outermost first (``[0, 2]`` for ``FROM build``)."""
    chain: list[int] = []
    current: int | None = index
    while current is not None and 0 <= current < len(df.stages):
        chain.insert(0, current)
        current = parent_stage(df, current)
    return chain


def tools_in_stage(df: Dockerfile, index: int) -> Tools:
    """The programs stage ``index`` ends with (following ``FROM <earlier stage>``)."""
    if index < 0 or index >= len(df.stages):
        return Tools()
    stage = df.stages[index]
    parent_index = parent_stage(df, index)
    if parent_index is not None:
        parent = tools_in_stage(df, parent_index)
        changes, pip, opaque = dict(parent.changes), set(parent.pip_packages), parent.opaque
        virtual: dict[str, list[str]] = {}
        image, family, os_name, base = parent.image, parent.family, parent.os, parent.base
    else:
        image = base_image(df, stage.base)
        family, os_name, base = family_of(image) if image else ("", "", frozenset())
        changes, pip, opaque, virtual = {}, set(), False, {}
    for ins in df.instructions:
        if ins.stage != index:
            continue
        if ins.cmd == "RUN":
            _replay_run(ins, changes, pip, virtual)
        elif ins.cmd in ("COPY", "ADD"):
            opaque = _replay_copy(ins, changes) or opaque
    return Tools(
        image=image, family=family, os=os_name, base=base, changes=changes, pip_packages=frozenset(pip), opaque=opaque
    )


def tools_in_final_stage(df: Dockerfile) -> Tools:
    """The programs the image ``df`` builds (its last stage) has; see the module docstring."""
    return tools_in_stage(df, df.final_stage)
