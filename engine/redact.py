"""Secrets never leave the machine, and are never written back as placeholders.

What is masked, before anything is sent to a model (and in run.json, the
reports and traces):

- literal values found in the repository's ``.env*`` files;
- values of secret-looking assignments: ``API_TOKEN=...``, ``ARG DB_PASSWORD=...``,
  ``password: ...``, quoted keys (``"DB_PASSWORD": "..."``), the legacy
  ``ENV DB_PASSWORD value`` form, ``.npmrc``'s ``//host/:_authToken=...`` and
  ``_auth=...``, ``.pypirc``'s ``password = ...``, DSN parts (``Password=...;``);
- credentials in URLs (``postgres://app:pw@db``), ``curl -u user:pass`` /
  ``--user user:pass``, ``Bearer``/``Basic`` authorization values;
- well-known token shapes (private key blocks, ``sk-``, ``ghp_``, ``AKIA``,
  ``xox?-``, ``npm_``, ``pypi-`` tokens);
- and any value found by the above, wherever else it appears (a password
  assigned in ``environment:`` and repeated in a healthcheck's ``-P``).

Each secret becomes a stable placeholder, ``__REDACTED_1a2b3c4d__``: the same
value gets the same placeholder for the whole run (an HMAC of the value with
a key kept in the run directory, so a resumed run asks the same questions and
its cached answers still apply). Redaction is idempotent: a placeholder is
never masked again.

An edit the model writes on the redacted text goes through ``restore``: a
placeholder kept on a line exactly as it was shown gets its value back; a
placeholder on a changed line, one the file didn't have, or a bare mark like
``[REDACTED]`` is refused with the reason (the secret can't be put back
safely, or the edit would write a mask into the file).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets as _secrets
from pathlib import Path

PLACEHOLDER = re.compile(r"__REDACTED_[0-9a-f]{8}__")
# Any redaction mark a model might write instead of a value (ours, or one it invented).
_MARK = re.compile(r"(?i)__REDACTED_\w*__|\[REDACTED\]|<REDACTED>|\bREDACTED\b")
_SECRET_NAME = (
    r"[A-Za-z0-9_.-]*(?:SECRET|TOKEN|PASSWORD|PASSWD|PASS|PWD|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY"
    r"|CREDENTIALS?|_KEY|_AUTH)[A-Za-z0-9_]*"
)
_VALUE = r"(\"[^\"\n]*\"|'[^'\n]*'|[^\s\"',;}\]]+)"
# NAME=value, NAME: value, "NAME": "value", 'NAME' = value (quoted keys, YAML, JSON, .pypirc, DSN parts).
_ASSIGNMENT = re.compile(rf"(?i)(?<![A-Za-z0-9])({_SECRET_NAME})([\"']?[ \t]*[=:][ \t]*){_VALUE}")
# The legacy form without "=": NAME DB_PASSWORD some value (the value is the rest of the line).
# Not anchored: the line may be quoted after a line number ("2: ENV ...") or an "Evidence: " label.
_LEGACY_ENV = re.compile(
    rf"(?im)((?<![A-Za-z0-9_])(?:ENV|ARG)[ \t]+{_SECRET_NAME}[ \t]+)([^\s=\\][^\n\\]*?)([ \t]*\\?)$"
)
# scheme://user:password@host (DSNs, git remotes, registry URLs).
_URL_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]*:)([^\s@/'\"]+)(@)")
# curl -u user:pass, --user user:pass, --user=user:pass, -uuser:pass; wget --password=... is an assignment.
# (Not -u 1000:1000, a uid:gid.)
_USER_FLAG = re.compile(
    r"((?:^|\s)(?:-u[ \t]*|--user[ \t=]+|--proxy-user[ \t=]+)[\"']?[^\s:\"']*:)(?!\d+(?:\s|$))([^\s\"']+)"
)
_DEFAULT = re.compile(r"(\$\{\w+:?[-=])([^}]+)")
# A credential has a digit somewhere (so "Basic authentication" and "token budget" stay prose).
_AUTH_HEADER = re.compile(r"(?i)(\b(?:Bearer|Basic|Token)[ \t]+)(?=[A-Za-z._~+/=-]*\d)([A-Za-z0-9._~+/=-]{8,})")
_PLAIN = {"true", "false", "yes", "no", "on", "off", "null", "none", "required", "optional"}
_HINT = re.compile(r"(?i)secret|token|pass|pwd|key|credential|auth")
_SHAPES = [  # (pattern, a substring every match contains: a cheap test before the regex)
    # A whole private key block; a block cut short (a file shown up to a limit) is masked to the end.
    (
        re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|.*\Z)", re.DOTALL),
        "PRIVATE KEY",
    ),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), "sk-"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), "gh"),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), "github_pat_"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "AKIA"),
    (re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}"), "xox"),
    (re.compile(r"\bnpm_[A-Za-z0-9]{30,}"), "npm_"),
    (re.compile(r"\bpypi-[A-Za-z0-9_-]{16,}"), "pypi-"),
]


class RestoreError(Exception):
    """An edit's placeholders can't be put back safely; the message says which and why."""


_NAME = re.compile(rf"(?i)^(?:export\s+)?{_SECRET_NAME}$")
_NOT_SECRET_NAME = re.compile(r"(?i)_(?:FILE|PATH|DIR|PORT|HOST|IMAGE|VERSION)$")


def looks_random(value: str) -> bool:
    """A token-like value: long, no spaces, letters and digits mixed (an API key, not a host name or a word)."""
    return (
        len(value) >= 16
        and not re.search(r"\s", value)
        and bool(re.search(r"[A-Za-z]", value))
        and bool(re.search(r"\d", value))
        and not value.startswith(("$", "/", "http"))
        and ":" not in value
        and not re.match(r"[\w-]+(\.[\w-]+)+/", value)
    )  # not an image reference


def env_values(root: Path) -> set[str]:
    """Secret values assigned in the .env-like files under ``root`` (not .git): masked wherever they appear.

    Only values of secret-looking names (``STRIPE_KEY``, ``POSTGRES_PASSWORD``)
    or token-like values: a .env also holds host names, ports and image tags
    (``OTEL_COLLECTOR_HOST=otel-collector``), and masking those everywhere
    would hide the service names the model has to read and edit.
    """
    values: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", "node_modules")]
        for name in filenames:
            if not (name == ".env" or name.startswith(".env.") or name.endswith(".env")):
                continue
            try:
                text = (Path(dirpath) / name).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                key, sep, value = line.partition("=")
                key, value = key.strip(), value.strip()
                if value and value[0] in "\"'" and value[1:].find(value[0]) >= 0:
                    value = value[1 : 1 + value[1:].find(value[0])]
                else:
                    value = re.split(r"\s+#", value, maxsplit=1)[0].strip()  # an inline comment
                if not sep or not key or key.startswith("#") or len(value) < 4 or value.startswith("${"):
                    continue
                if (_NAME.match(key) and not _NOT_SECRET_NAME.search(key)) or looks_random(value):
                    values.add(value)
    return values


def run_key(directory: Path) -> bytes:
    """The run's redaction key (created once, kept in the run directory): stable placeholders across resumes."""
    path = Path(directory) / "redaction.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        key = _secrets.token_bytes(16)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key.hex())
        return key


class Redactor:
    """Masks secrets with stable placeholders and remembers them, so an edit can have them restored."""

    def __init__(self, literals: set[str] | None = None, key: bytes | None = None) -> None:
        self.literals = sorted((v for v in literals or set() if not PLACEHOLDER.fullmatch(v)), key=len, reverse=True)
        self.key = key or _secrets.token_bytes(16)
        self.values: dict[str, str] = {}  # placeholder -> the secret it stands for
        self._scrubbed: dict[str, str] = {}
        self.count = 0

    def placeholder(self, secret: str) -> str:
        digest = hmac.new(self.key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:8]
        mark = f"__REDACTED_{digest}__"
        self.values[mark] = secret
        self.count += 1
        return mark

    def _mask(self, secret: str) -> str:
        """``secret`` as a placeholder, leaving placeholders (and empty values) as they are: idempotent."""
        if not secret or PLACEHOLDER.search(secret) or set(secret) <= set("*"):
            return secret
        quote = secret[0] if secret[0] in "\"'" and secret[-1:] == secret[0] and len(secret) >= 2 else ""
        inner = secret[1:-1] if quote else secret
        if not inner or PLACEHOLDER.search(inner) or inner.startswith("/run/secrets/") or inner.lower() in _PLAIN:
            return secret  # empty, already masked, a flag (BYPASS_CACHE=true), or where a mounted secret is
        if inner.startswith("$"):
            default = _DEFAULT.match(inner)  # ${VAR:-default} holds a secret in its default; ${VAR} holds none
            return (
                secret
                if not default
                else secret.replace(default.group(0), default.group(1) + self._mask(default.group(2)), 1)
            )
        return quote + self.placeholder(inner) + quote

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if _HINT.search(text):  # the name-based patterns are the slow ones: only where a name could match
            text = _LEGACY_ENV.sub(lambda m: m.group(1) + self._mask(m.group(2)) + m.group(3), text)
            text = _ASSIGNMENT.sub(
                lambda m: (
                    m.group(0)
                    if _NOT_SECRET_NAME.search(m.group(1))
                    else m.group(1) + m.group(2) + self._mask(m.group(3))
                ),
                text,
            )
        for pattern, hint in ((_URL_USERINFO, "://"), (_USER_FLAG, "-u"), (_AUTH_HEADER, "")):
            if hint in text:
                text = pattern.sub(lambda m: m.group(1) + self._mask(m.group(2)) + "".join(m.groups()[2:]), text)
        for shape, hint in _SHAPES:
            if hint in text:
                text = shape.sub(lambda m: self._mask(m.group(0)), text)
        # A secret found once is masked wherever else it appears (`SA_PASSWORD: pw` and, lines later,
        # `sqlcmd -P pw` in a healthcheck), like the .env values.
        learned = {v for v in self.values.values() if len(v) >= 4}
        for literal in sorted(learned.union(self.literals), key=len, reverse=True):
            if literal in text:
                text = self._literal(text, literal)
        return text

    def _literal(self, text: str, literal: str) -> str:
        # Split on placeholders so a literal is never matched inside one (that would mask the mask).
        parts = PLACEHOLDER.split(text)
        marks = PLACEHOLDER.findall(text)
        out = [parts[0].replace(literal, self._mask(literal))]
        for mark, part in zip(marks, parts[1:]):
            out += [mark, part.replace(literal, self._mask(literal)) if literal in part else part]
        return "".join(out)

    def scrub(self, value: object) -> object:
        """``value`` (str, list, dict, nested) with every string redacted: for run.json, reports and traces.

        Memoized per string: run.json is written after every node with mostly the same strings.
        """
        if isinstance(value, str):
            done = self._scrubbed.get(value)
            if done is None:
                done = self._scrubbed[value] = self(value)
            return done
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub(v) for v in value]
        return value

    # -- putting secrets back into an edit --------------------------------
    def restore(self, shown: str, edited: str, where: str, diff: bool = False) -> str:
        """``edited`` (whole file, or a unified diff) with the placeholders of ``shown`` given their values back.

        ``shown`` is the file as the model saw it (redacted). A line of the edit
        that holds a placeholder must be a line of ``shown`` unchanged (for a
        diff: a context, removed or added line); a secret's line that the edit
        drops is fine (nothing is written back). Anything else is refused.
        """
        shown_lines = set(shown.splitlines())
        known = set(PLACEHOLDER.findall(shown))
        lines = edited.splitlines()
        body = [
            line[1:] if diff and line[:1] in " +-" and not line.startswith(("+++ ", "--- ")) else line for line in lines
        ]
        marks = [m for line in body for m in _MARK.findall(line)]
        unknown = sorted({m for m in marks if PLACEHOLDER.fullmatch(m) and m not in known})
        if unknown:
            raise RestoreError(
                f"refused edit of {where}: it writes redaction placeholder(s) {', '.join(unknown)} "
                "that this file does not hold (a secret from elsewhere, or an invented one)"
            )
        bare = [m for m in marks if not PLACEHOLDER.fullmatch(m)]
        if len(bare) > len([m for m in _MARK.findall(shown) if not PLACEHOLDER.fullmatch(m)]):
            raise RestoreError(
                f"refused edit of {where}: it writes the redaction mark {bare[0]!r} into the file in place of a value"
            )
        for number, line in enumerate(body, start=1):
            if PLACEHOLDER.search(line) and line not in shown_lines:
                raise RestoreError(
                    f"refused edit of {where}: line {number} changes the text around a redacted "
                    f"secret ({line.strip()[:80]!r}); the secret can't be put back safely"
                )
        return PLACEHOLDER.sub(lambda m: self.values.get(m.group(0), m.group(0)), edited)


class _Masker(Redactor):
    """The same forms masked with one fixed mark: nothing of the value is kept, not even a hash of it."""

    MARK = "__REDACTED_00000000__"

    def __init__(self) -> None:
        super().__init__(key=b"-")  # no key is used, and none is drawn (the analyzer starts light)

    def placeholder(self, secret: str) -> str:
        self.count += 1
        return self.MARK  # nothing remembered: the same text is masked the same way in every process


_MASKER: _Masker | None = None


def mask(text: str) -> str:
    """``text`` with every secret form above replaced by ``__REDACTED_00000000__``.

    What: the masking of findings (their message and evidence, whichever
    tool made them) and of ``pipeline analyze``'s output, done where a finding is
    made, so no output (JSON, SARIF, markdown, run.json, checkpoints) can
    carry the value. Why: a build file's ``ARG NPM_TOKEN=...`` cited as
    evidence went verbatim into the SARIF a workflow uploads to code scanning.
    Deterministic (no run key, no learned values): a finding's id and
    fingerprint are the same in every run, and a changed secret doesn't make
    a finding look new. Example: ``ENV API_KEY=abc123`` ->
    ``ENV API_KEY=__REDACTED_00000000__``.
    """
    global _MASKER
    if not text:
        return text
    if _MASKER is None:
        _MASKER = _Masker()
    return _MASKER(text)


def mask_data(value: object) -> object:
    """``value`` (str, list, dict, nested; keys kept) with every string masked as by ``mask``."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: mask_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_data(v) for v in value]
    return value
