"""Compose files as ``docker compose`` resolves them: the build each service really gets.

``docker compose`` seldom reads one file alone, and the analysis shouldn't either:

- **configurations**: every compose file is a configuration of its own
  (``docker compose -f FILE``). In a directory with a default file
  (``compose.yaml``, ``compose.yml``, ``docker-compose.yml``,
  ``docker-compose.yaml``, first found wins), the first override file
  (``compose.override.yml``...) is merged onto it, as ``docker compose`` does
  with no ``-f``; and a variant file beside it (``compose.prod.yaml``) is
  merged onto it, as ``docker compose -f compose.yaml -f compose.prod.yaml``
  (the convention these names follow); a variant's service that names its
  own context or Dockerfile counts alone too (``-f compose.prod.yaml``),
  when that Dockerfile exists. A ``.env`` that sets ``COMPOSE_FILE``
  (``a.yaml:b.yaml``) declares one more configuration for its directory.
  Paths are relative to the first file's directory, the project directory.
- **merge**: compose's rules for the keys that decide a build: mappings
  (``build``, ``args``, ``additional_contexts``) merge key by key, the later
  file winning; ``profiles`` append; ``build: ./x`` merges as
  ``{context: ./x}``; ``!reset`` removes a key, ``!override`` replaces it.
- **include**: each included file is a project of its own: its paths are
  relative to its directory (or ``project_directory``), its variables come
  from the ``.env`` there (or ``env_file``) with the including project's
  taking precedence; its services join the model (the including file's own
  win a name clash, which compose refuses anyway).
- **extends**: ``extends: {file, service}`` (or a service of the same file)
  merges the named service under the local one, recursively; the extended
  service's relative paths stay relative to its own file.
- **interpolation**: ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
  ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+alt}``,
  ``${VAR+alt}`` and ``$$``, with the variables of the ``.env`` file in the
  project directory.

The shell's environment is never read: the analysis gives the same answer on
every machine. So a build whose context or Dockerfile uses a variable no
``.env`` sets, with no default (compose would substitute "" and warn), or a
``${VAR:?error}`` that fails, or an ``include``/``extends`` that points
nowhere, is not guessed: it gets no BuildSpec and is listed in
``Resolution.unresolved`` with the file and line that wrote it (rule CO010).

Example: with ``.env`` holding ``API_DOCKERFILE=./src/api/Dockerfile``,

    services:
      api:
        build: {context: ., dockerfile: "${API_DOCKERFILE}"}

builds ``src/api/Dockerfile`` from the repository root, where the file
read alone would name a Dockerfile called ``${API_DOCKERFILE}``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agent_pipelines.pipelines.docker_optimization.model.compose import BuildSpec, ComposeFile

# compose-go's discovery order (cli/options.go): the first default file found is the base,
# the first override file found is merged onto it.
DEFAULT_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_NAMES = (
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


# -- interpolation ---------------------------------------------------------------------------------


@dataclass
class Expansion:
    """What interpolating one value gave: the text, and the variables or errors that left it unknown."""

    text: str
    missing: list[str] = field(default_factory=list)  # unset, no default: compose substitutes ""
    errors: list[str] = field(default_factory=list)  # ${VAR:?message} that fired, or a malformed template

    @property
    def ok(self) -> bool:
        return not self.missing and not self.errors


def interpolate(text: str, env: Mapping[str, str]) -> Expansion:
    """``text`` with compose's variable syntax replaced from ``env``.

    >>> interpolate("${DIR:-./api}/x$$y", {}).text
    './api/x$y'
    """
    out = Expansion("")
    out.text = _expand(text, env, out)
    return out


def _expand(text: str, env: Mapping[str, str], out: Expansion) -> str:
    parts: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find("$", i)
        if j < 0:
            parts.append(text[i:])
            break
        parts.append(text[i:j])
        nxt = text[j + 1 : j + 2]
        if nxt == "$":
            parts.append("$")
            i = j + 2
        elif nxt == "{":
            end = _closing(text, j + 2)
            if end < 0:
                out.errors.append(f"invalid interpolation format in {text!r}: an unclosed ${{")
                parts.append(text[j:])
                break
            parts.append(_braced(text[j + 2 : end], env, out))
            i = end + 1
        else:
            m = _NAME.match(text, j + 1)
            if m is None:
                parts.append("$")
                i = j + 1
                continue
            value = env.get(m.group())
            if value is None:
                out.missing.append(m.group())
            parts.append(value or "")
            i = m.end()
    return "".join(parts)


def _closing(text: str, start: int) -> int:
    depth, i = 1, start
    while i < len(text):
        if text.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _braced(body: str, env: Mapping[str, str], out: Expansion) -> str:
    m = _NAME.match(body)
    if m is None:
        out.errors.append(f"invalid interpolation format: ${{{body}}}")
        return ""
    name, rest = m.group(), body[m.end() :]
    value = env.get(name)
    if not rest:
        if value is None:
            out.missing.append(name)
        return value or ""
    op = next((o for o in _OPERATORS if rest.startswith(o)), None)
    if op is None:
        out.errors.append(f"invalid interpolation format: ${{{body}}}")
        return ""
    word = rest[len(op) :]
    unset = value is None or (op.startswith(":") and value == "")
    if op in (":-", "-"):
        return _expand(word, env, out) if unset else value or ""
    if op in (":?", "?"):
        if unset:
            why = _expand(word, env, Expansion(""))
            out.errors.append(f"required variable {name} is missing a value" + (f": {why}" if why else ""))
            return ""
        return value or ""
    return "" if unset else _expand(word, env, out)  # :+ and +


def parse_env(text: str, outer: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of a ``.env`` file, read as compose reads it.

    ``KEY=value`` lines (``export`` allowed), ``#`` comments, single quotes
    literal, double quotes with ``\\n`` escapes, unquoted values trimmed and cut
    at `` #``; unquoted and double-quoted values may use variables set above
    (or in ``outer``).
    """
    env: dict[str, str] = {}
    outer = outer or {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _NAME.fullmatch(key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == "'" and value.rfind("'") > 0:
            value = value[1 : value.rfind("'")]
        else:
            if len(value) >= 2 and value[0] == '"' and value.rfind('"') > 0:
                value = value[1 : value.rfind('"')].replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
            else:
                value = re.split(r"\s#", value, maxsplit=1)[0].rstrip()
            value = _expand(value, {**outer, **env}, Expansion(""))
        env[key] = value
    return env


# -- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unresolved:
    """A build (or an include/extends) compose can't resolve from what the repository holds."""

    file: str
    line: int
    message: str


@dataclass
class Resolution:
    builds: dict[str, list[BuildSpec]]  # compose file -> builds of the services it defines, every configuration
    unresolved: list[Unresolved]
    configurations: list[tuple[str, ...]]  # the file lists resolved (each as ``docker compose -f ... -f ...``)
    inputs: frozenset[str] = frozenset()  # every path looked at (compose, .env, included, extended, a Dockerfile
    # probed; absent too)


@dataclass(frozen=True)
class _Missing:
    """A build field whose value is unknown (the Unresolved says why)."""

    why: Unresolved


@dataclass
class _Layer:
    """One service as far as builds go, after one or more definitions merged."""

    build: dict | None = None  # context (repo path), dockerfile, target, args, arg_values, additional_contexts, inline
    build_at: tuple[str, int] = ("", 0)  # the service entry that last wrote ``build``
    profiles: tuple[str, ...] = ()
    reset_build: bool = False  # ``build: !reset``
    override_build: bool = False  # ``build: !override``
    key_tags: dict[str, str] = field(default_factory=dict)


def _merge(base: _Layer | None, top: _Layer) -> _Layer:
    """compose's merge of ``top`` onto ``base`` (the keys that decide a build)."""
    if base is None:
        return top
    if top.reset_build:
        build, at = None, top.build_at
    elif top.build is None:
        build, at = base.build, base.build_at
    elif base.build is None or top.override_build:
        build, at = top.build, top.build_at
    else:
        build, at = dict(base.build), top.build_at
        for key, value in top.build.items():
            tag = top.key_tags.get(key, "")
            if tag == "!reset":
                build.pop(key, None)
            elif isinstance(value, dict) and isinstance(build.get(key), dict) and tag != "!override":
                build[key] = {**build[key], **value}
            else:
                build[key] = value
    profiles = tuple(dict.fromkeys(base.profiles + top.profiles))
    return _Layer(build=build, build_at=at, profiles=profiles)


def _join(base: str, rel: str) -> str:
    if "://" in rel or rel.startswith("git@"):
        return rel
    return posixpath.normpath(posixpath.join(base, rel)) if base else posixpath.normpath(rel or ".")


def _line(node: Any, key: object, default: int = 0) -> int:  # a node with .lc, or any (then default)
    try:
        return node.lc.key(key)[0] + 1
    except (AttributeError, KeyError, TypeError):
        return default


def _tag(node: Any, key: object) -> str:
    try:
        return node.lc.tag(key)
    except AttributeError:
        return ""


def _pairs(value: object) -> dict[str, object]:
    """A compose mapping written as a mapping or as ``KEY=value`` items."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {k: (v if sep else None) for k, sep, v in (s.partition("=") for s in map(str, value))}
    return {}


def _strings(value: object) -> list[str]:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [str(value)]
    return [str(v) for v in value if isinstance(v, (str, int, float))] if isinstance(value, list) else []


_R = TypeVar("_R")


class Resolver:
    """Resolves configurations over a tree: ``read(path)`` loads a compose file, ``text(path)`` any file."""

    def __init__(
        self,
        read: Callable[[str], ComposeFile | None],
        text: Callable[[str], str | None],
        exists: Callable[[str], bool] | None = None,
    ) -> None:
        self.inputs: set[str] = set()
        self.read = self._noting(read)
        self.text = self._noting(text)
        self.exists = self._noting(exists) if exists is not None else (lambda path: True)
        self.unresolved: dict[Unresolved, None] = {}
        self._envs: dict[tuple[str, ...], dict[str, str]] = {}

    def _noting(self, reader: Callable[[str], _R]) -> Callable[[str], _R]:
        """``reader``, remembering each path asked for: a change to any of them changes the builds."""

        def read(path: str) -> _R:
            self.inputs.add(path)
            return reader(path)

        return read

    # -- configurations ------------------------------------------------------------------
    def configurations(self, paths: list[str]) -> list[tuple[str, ...]]:
        """The file lists ``docker compose`` reads these compose files in (see the module's docstring)."""
        present = set(paths)
        found: list[tuple[str, ...]] = []
        for path in paths:
            folder, name = posixpath.split(path)
            base = next((j for j in (posixpath.join(folder, n) for n in DEFAULT_NAMES) if j in present), "")
            if not base or path == base or name in DEFAULT_NAMES:
                found.append((path,))
            else:  # the override, or a variant (compose.prod.yaml) of the directory's default file
                found.append((base, path))
        return found

    def declared(self, paths: list[str]) -> list[tuple[str, ...]]:
        """The configurations ``COMPOSE_FILE`` in a ``.env`` beside compose files declares."""
        found = []
        for folder in sorted({posixpath.dirname(p) for p in paths}):
            env_file = posixpath.join(folder, ".env")
            value = self.env((env_file,)).get("COMPOSE_FILE", "")
            separator = self.env((env_file,)).get("COMPOSE_PATH_SEPARATOR", ":") or ":"
            files = tuple(_join(folder, f.strip()) for f in value.split(separator) if f.strip())
            if not files:
                continue
            missing = [f for f in files if self.read(f) is None]
            if missing:
                self._report(
                    env_file,
                    _env_line(self.text(env_file) or "", "COMPOSE_FILE"),
                    f"COMPOSE_FILE names {', '.join(missing)}, which the repository doesn't have: "
                    "that configuration is not analyzed",
                )
            else:
                found.append(files)
        return found

    def env(self, files: tuple[str, ...], outer: Mapping[str, str] | None = None) -> dict[str, str]:
        """The variables of ``.env`` files (later ones win), then ``outer`` over them."""
        key = files + tuple(f"{k}={v}" for k, v in sorted((outer or {}).items()))
        if key not in self._envs:
            env: dict[str, str] = {}
            for path in files:
                env.update(parse_env(self.text(path) or "", env))
            env.update(outer or {})
            self._envs[key] = env
        return self._envs[key]

    def resolve(self, paths: list[str]) -> Resolution:
        builds: dict[str, list[BuildSpec]] = {p: [] for p in paths}
        seen: set[tuple] = set()
        configurations = self.configurations(paths)
        configurations += [c for c in self.declared(paths) if c not in configurations]
        for files in configurations:
            self._collect(files, builds, seen)
        for files in configurations:
            variant = files[-1]
            if len(files) == 2 and posixpath.basename(variant) not in OVERRIDE_NAMES and variant in paths:
                self._collect((variant,), builds, seen, alone=True)
        return Resolution(
            builds=builds,
            unresolved=list(self.unresolved),
            configurations=configurations,
            inputs=frozenset(self.inputs),
        )

    def _collect(
        self, files: tuple[str, ...], builds: dict[str, list[BuildSpec]], seen: set[tuple], alone: bool = False
    ) -> None:
        """Add the builds of one configuration to ``builds`` (per owning file), each once.

        ``alone``: a variant read on its own keeps only the services that name
        their own context or Dockerfile, when that Dockerfile exists (the rest
        only make sense merged onto the base).
        """
        directory = posixpath.dirname(files[0])
        env_file = posixpath.join(directory, ".env")
        model = self.model(files, directory, self.env((env_file,)), env_file, frozenset())
        first = self.read(files[0]) if alone else None
        own = first.services if first is not None else {}
        for name, (layer, owner) in model.items():
            if alone and not _names_its_build(own.get(name)):
                continue
            spec = self._spec(name, layer, directory)
            if spec is None or (alone and not self.exists(spec.dockerfile)):
                continue
            key = (owner, spec.service, spec.context, spec.dockerfile, spec.target)
            if key not in seen:
                seen.add(key)
                builds.setdefault(owner, []).append(spec)

    def model(
        self, files: tuple[str, ...], directory: str, env: dict[str, str], env_file: str, including: frozenset[str]
    ) -> dict[str, tuple[_Layer, str]]:
        """Service name -> (its merged layer, the last of ``files`` that defines it) for one configuration."""
        model: dict[str, tuple[_Layer, str]] = {}
        for path in files:
            compose = self.read(path)
            if compose is None or compose.error:
                continue
            for name in compose.services:
                layer = self._service(path, str(name), directory, env, env_file, ())
                if layer is not None:
                    old = model.get(str(name))
                    model[str(name)] = (_merge(old[0] if old else None, layer), path)
        for path in files:
            compose = self.read(path)
            if compose is None or compose.error or not isinstance(compose.data, dict):
                continue
            entries = compose.data.get("include")
            for index, entry in enumerate(entries if isinstance(entries, list) else []):
                line = _item_line(entries, index, _line(compose.data, "include"))
                for name, value in self._include(path, line, entry, directory, env, including | set(files)).items():
                    model.setdefault(name, value)
        return model

    def _include(
        self, path: str, line: int, entry: object, directory: str, env: dict[str, str], including: frozenset[str]
    ) -> dict[str, tuple[_Layer, str]]:
        entry = {"path": entry} if isinstance(entry, str) else entry if isinstance(entry, dict) else {}
        raw_paths = [self._text_value(path, line, "include path", p, env) for p in _strings(entry.get("path"))]
        if not raw_paths or None in raw_paths:
            return {}
        files = tuple(_join(directory, p) for p in raw_paths if p is not None)
        for target in files:
            if target in including:
                self._report(
                    path,
                    line,
                    f"include of {target} makes a cycle ({' -> '.join(sorted(including))}); compose refuses it",
                )
                return {}
            if self.read(target) is None:
                self._report(
                    path,
                    line,
                    f"include of {target}: no such compose file in the repository "
                    "(compose refuses to start), so its services are not analyzed",
                )
                return {}
        where = entry.get("project_directory")
        sub_dir = _join(directory, str(where)) if isinstance(where, str) else posixpath.dirname(files[0])
        env_files = tuple(_join(directory, e) for e in _strings(entry.get("env_file"))) or (
            posixpath.join(sub_dir, ".env"),
        )
        sub_env = self.env(env_files, env)  # the including project's variables win
        return self.model(files, sub_dir, sub_env, env_files[0], including)

    # -- services ------------------------------------------------------------------------
    def _service(
        self,
        path: str,
        name: str,
        directory: str,
        env: dict[str, str],
        env_file: str,
        chain: tuple[tuple[str, str], ...],
    ) -> _Layer | None:
        compose = self.read(path)
        services = compose.services if compose is not None and not compose.error else {}
        key = next((k for k in services if str(k) == name), None)  # YAML allows `1:` as a service name
        svc = services.get(key)
        if not isinstance(svc, dict) or compose is None or key is None:  # a service implies both
            return None
        line = compose.line_of(key)
        layer = self._own(path, name, svc, line, directory, env, env_file)
        ext = svc.get("extends")
        if ext is None:
            return layer
        ext_line = _line(svc, "extends", line)
        target_name: str | None
        target_file: str | None
        if isinstance(ext, str):
            target_name, target_file = ext, None
        elif isinstance(ext, dict):
            target_name, target_file = str(ext.get("service", "")), ext.get("file")
        else:
            return layer
        target_name = self._text_value(path, ext_line, "extends service", target_name, env)
        if target_file is not None:
            target_file = self._text_value(path, ext_line, "extends file", str(target_file), env)
        if target_name is None or (target_file is None and isinstance(ext, dict) and ext.get("file") is not None):
            return layer
        target_path = _join(directory, target_file) if target_file else path
        target_dir = posixpath.dirname(target_path) if target_file else directory
        key = (target_path, target_name)
        if key in chain or key == (path, name):
            self._report(path, ext_line, f"service {name} extends {target_name} in a cycle; compose refuses it")
            return layer
        target = self.read(target_path)
        if target is None or target.error:
            why = "no such file in the repository" if target is None else "it could not be read as compose"
            self._report(
                path,
                ext_line,
                f"service {name} extends {target_name} from {target_path}: {why}, so what it inherits is not analyzed",
            )
            return layer
        base = self._service(target_path, target_name, target_dir, env, env_file, chain + ((path, name),))
        if base is None:
            self._report(
                path,
                ext_line,
                f"service {name} extends {target_name}, which {target_path} does not "
                "define, so what it inherits is not analyzed",
            )
            return layer
        return _merge(base, layer)

    def _own(
        self, path: str, name: str, svc: dict, line: int, directory: str, env: dict[str, str], env_file: str
    ) -> _Layer:
        """What one service entry itself says, interpolated, with its context made a repository path."""
        layer = _Layer(build_at=(path, line))
        profiles = [self._text_value(path, line, "profile", p, env) for p in _strings(svc.get("profiles"))]
        layer.profiles = tuple(p for p in profiles if p)
        if "build" not in svc:
            return layer
        tag = _tag(svc, "build")
        raw = svc["build"]
        if tag == "!reset":
            layer.reset_build = True
            return layer
        layer.override_build = tag == "!override"
        at = _line(svc, "build", line)
        if isinstance(raw, str):
            raw = {"context": raw}
        if not isinstance(raw, dict):
            return layer
        build: dict = {}
        for key in ("context", "dockerfile"):
            if isinstance(raw.get(key), (list, dict)):
                build["invalid"] = True  # the schema rule (CO008) says what is wrong; no build is guessed
            elif key in raw and raw[key] is not None:
                got = interpolate(str(raw[key]), env)
                if got.ok:
                    build[key] = _join(directory, got.text) if key == "context" else got.text
                else:
                    build[key] = _Missing(self._unknown(path, at, name, key, str(raw[key]), got, env_file))
        if raw.get("target") is not None:
            build["target"] = interpolate(str(raw["target"]), env).text
        if "dockerfile_inline" in raw:
            build["inline"] = True
        if "args" in raw:
            # As written (a generated file copies these: never a value from .env), and as compose passes them.
            written = _pairs(raw["args"])
            build["args"] = {k: "" if v is None else str(v) for k, v in written.items()}
            build["arg_values"] = {
                k: env.get(k, "") if v is None else interpolate(str(v), env).text for k, v in written.items()
            }
            layer.key_tags["args"] = layer.key_tags["arg_values"] = _tag(raw, "args")
        if "additional_contexts" in raw:
            build["additional_contexts"] = {
                k: interpolate(str(v), env).text for k, v in _pairs(raw["additional_contexts"]).items() if v is not None
            }
            layer.key_tags["additional_contexts"] = _tag(raw, "additional_contexts")
        for key in raw:
            if _tag(raw, key) == "!reset":
                layer.key_tags[str(key)] = "!reset"
                build.setdefault(str(key), None)
        layer.build = build
        return layer

    def _spec(self, name: str, layer: _Layer, directory: str) -> BuildSpec | None:
        build = layer.build
        if build is None or build.get("inline") or build.get("invalid"):
            return None  # no build, dockerfile_inline (no Dockerfile in the tree to analyze), or not compose
        unknown = [v for v in (build.get("context"), build.get("dockerfile")) if isinstance(v, _Missing)]
        if unknown:
            for each in unknown:
                self.unresolved[each.why] = None
            return None
        context = build.get("context") or (directory or ".")
        file, line = layer.build_at
        return BuildSpec(
            service=name,
            context=context,
            dockerfile=_join(context, build.get("dockerfile") or "Dockerfile"),
            target=str(build.get("target") or ""),
            args=dict(build.get("args") or {}),
            arg_values=dict(build.get("arg_values") or {}),
            additional_contexts=dict(build.get("additional_contexts") or {}),
            line=line,
            file=file,
            profiles=layer.profiles,
        )

    # -- problems ------------------------------------------------------------------------
    def _unknown(
        self, path: str, line: int, name: str, key: str, raw: str, got: Expansion, env_file: str
    ) -> Unresolved:
        if got.errors:
            why = "; ".join(dict.fromkeys(got.errors))
        else:
            names = ", ".join(dict.fromkeys(got.missing))
            where = f"{env_file} does not set" if self.text(env_file) is not None else f"no {env_file} sets"
            why = (
                f"{names} {'has' if len(got.missing) == 1 else 'have'} no default and {where} "
                f"{'it' if len(got.missing) == 1 else 'them'} (compose would use an empty string)"
            )
        return Unresolved(
            path,
            line,
            f"service {name}: build {key} {raw!r} can't be resolved: {why}; this build is left out of the analysis",
        )

    def _text_value(self, path: str, line: int, what: str, raw: str, env: dict[str, str]) -> str | None:
        got = interpolate(raw, env)
        if got.ok:
            return got.text
        why = "; ".join(got.errors) or f"{', '.join(got.missing)} not set and no default"
        self._report(path, line, f"{what} {raw!r} can't be resolved: {why}")
        return None

    def _report(self, path: str, line: int, message: str) -> None:
        self.unresolved[Unresolved(path, line, message)] = None


def _names_its_build(service: object) -> bool:
    """Does a service entry write its own build context or Dockerfile (``build: ./x`` counts)?"""
    build = service.get("build") if isinstance(service, dict) else None
    return isinstance(build, str) or (isinstance(build, dict) and ("context" in build or "dockerfile" in build))


def _env_line(text: str, name: str) -> int:
    """The line of ``.env`` that sets ``name`` (0 when none does)."""
    return next(
        (
            i
            for i, line in enumerate(text.splitlines(), 1)
            if line.strip().removeprefix("export ").lstrip().startswith(name + "=")
        ),
        0,
    )


def _item_line(node: Any, index: int, default: int) -> int:
    try:
        return node.lc.item(index)[0] + 1
    except (AttributeError, KeyError, IndexError, TypeError):
        return default


def resolve(
    paths: list[str],
    read: Callable[[str], ComposeFile | None],
    text: Callable[[str], str | None],
    exists: Callable[[str], bool] | None = None,
) -> Resolution:
    """Every build the compose files at ``paths`` declare, as compose resolves them (see the module docstring)."""
    return Resolver(read, text, exists).resolve(paths)
