"""Dockerfiles parsed with BuildKit's own parser (the ``dockerfile`` package), plus raw lines.

The parser gives instructions, flags, heredocs and exact line spans; the raw
lines keep what the parser drops (comments, directives, pragmas) and are what
fixes edit, so untouched bytes stay untouched.
"""

from __future__ import annotations

import bisect
import posixpath
import re
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

import dockerfile as _bk

_MOUNT_KV = re.compile(r"([a-z-]+)=([^,]*)")


@contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM while the parser (a Go extension) runs; deliver them as soon as it returns.

    Why: a KeyboardInterrupt raised inside the extension (its calls back into Python run the
    handler) comes out as ``SystemError: ... returned a result with an exception set``, or is
    lost: the analysis then reported "the parser failed" and went on, and Ctrl-C was swallowed.
    Example: Ctrl-C during the parse of a 50,000-line Dockerfile stops the run (exit 130).
    Instead of raising in the extension, the signal is noted and re-raised by the handler that was
    installed before. Only on the main thread (the only one Python delivers signals to).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def note(signum, _frame) -> None:
        caught.append(signum)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if callable(handler):  # SIG_DFL/SIG_IGN stay: the kernel acts on those, never the extension
            previous[signum] = signal.signal(signum, note)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            previous[signum](signum, None)


def _interrupted(err: BaseException | None) -> bool:
    """Whether an exception came from a KeyboardInterrupt raised inside a C extension."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


@dataclass(frozen=True)
class Instruction:
    cmd: str  # upper-case keyword: RUN, COPY, ...
    original: str
    start_line: int  # 1-based, inclusive
    end_line: int
    flags: tuple[str, ...]
    value: tuple[str, ...]
    json: bool
    stage: int  # index of the stage it belongs to (-1 before the first FROM)

    @property
    def command(self) -> str:
        """A RUN's command text as the shell sees it (continuations joined)."""
        return " ".join(self.value)

    def flag(self, name: str) -> list[str]:
        prefix = f"--{name}="
        return [f[len(prefix) :] for f in self.flags if f.startswith(prefix)]

    def mounts(self) -> list[dict[str, str]]:
        return [dict(_MOUNT_KV.findall(m)) for m in self.flag("mount")]


def resolve_path(cwd: str, path: str) -> str:
    """``path`` as an absolute image path seen from ``cwd`` ("" when a variable makes it unknown)."""
    if "$" in path or (not path.startswith("/") and (not cwd or "$" in cwd)):
        return ""
    return posixpath.normpath(path if path.startswith("/") else posixpath.join(cwd, path))


def under(path: str, directory: str) -> bool:
    return bool(path and directory) and (path == directory or path.startswith(directory.rstrip("/") + "/"))


@dataclass(frozen=True)
class Stage:
    index: int
    base: str
    name: str
    start_line: int


@dataclass
class Dockerfile:
    path: str  # repo-relative, "/"-separated
    text: str
    instructions: list[Instruction] = field(default_factory=list)
    error: str = ""
    # Per-file indexes rules build once (a rule asking "what came before this line?" for every
    # instruction would otherwise rescan the file each time: quadratic in its length).
    memo: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, path: str, text: str) -> Dockerfile:
        try:
            with signals_deferred():
                commands = _bk.parse_string(text)
        except _bk.GoParseError as err:
            return cls(path=path, text=text, error=str(err).strip())
        except SystemError as err:
            if _interrupted(err):  # off the main thread (no deferral there): the interrupt, not a parse error
                raise KeyboardInterrupt from None
            raise
        instructions, stage = [], -1
        for c in commands:
            if c.cmd.upper() == "FROM":
                stage += 1
            instructions.append(
                Instruction(
                    cmd=c.cmd.upper(),
                    original=c.original,
                    start_line=c.start_line,
                    end_line=c.end_line,
                    flags=tuple(c.flags),
                    value=tuple(c.value),
                    json=c.json,
                    stage=stage,
                )
            )
        return cls(path=path, text=text, instructions=instructions)

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines(keepends=True)

    @cached_property
    def stages(self) -> list[Stage]:
        found: list[Stage] = []
        for ins in self.instructions:
            if ins.cmd == "FROM":
                base = ins.value[0] if ins.value else ""
                name = ins.value[2] if len(ins.value) >= 3 and ins.value[1].lower() == "as" else ""
                found.append(Stage(index=len(found), base=base, name=name, start_line=ins.start_line))
        return found

    def parent(self, index: int) -> int | None:
        """The earlier stage that stage ``index`` is built ``FROM`` (``FROM build``), or None for an image."""
        parents = self.memo.get("parents")
        if parents is None:  # the first earlier stage of that name, case-insensitive, as BuildKit looks it up
            parents = self.memo["parents"] = {}
            named: dict[str, int] = {}
            for s in self.stages:
                parents[s.index] = named.get(s.base.lower())
                if s.name:
                    named.setdefault(s.name.lower(), s.index)
        return parents.get(index)

    @property
    def final_stage(self) -> int:
        return len(self.stages) - 1

    def of(self, *cmds: str) -> list[Instruction]:
        """The instructions with these keywords, in order (a new list; the index behind it is built once)."""
        by_cmd = self.memo.get("by_cmd")
        if by_cmd is None:
            by_cmd = self.memo["by_cmd"] = {}
            for i in self.instructions:
                by_cmd.setdefault(i.cmd, []).append(i)
        if len(cmds) == 1:
            return list(by_cmd.get(cmds[0], ()))
        return [i for i in self.instructions if i.cmd in cmds]

    def in_stage(self, stage: int) -> list[Instruction]:
        """The instructions of one stage, in order (the index is built once per file)."""
        stages = self.memo.get("by_stage")
        if stages is None:
            stages = self.memo["by_stage"] = {}
            for i in self.instructions:
                stages.setdefault(i.stage, []).append(i)
        return stages.get(stage, [])

    def source(self, ins: Instruction) -> str:
        """The raw text of an instruction, exactly as written (continuations, comments inside)."""
        return "".join(self.lines[ins.start_line - 1 : ins.end_line])

    def workdir_at(self, ins: Instruction) -> str:
        """The WORKDIR in effect when ``ins`` runs ("/" by default; a stage built FROM another inherits it)."""
        return self._workdir(ins.stage, ins.start_line) if ins.stage >= 0 else "/"

    def _workdir(self, stage: int, before: int | None = None) -> str:
        """The working directory of ``stage`` before line ``before`` (its last one when None).

        Each stage's WORKDIRs are resolved once per file and looked up by bisection.
        """
        memo = self.memo.setdefault("workdirs", {})
        steps = memo.get(stage)
        if steps is None:
            parent = self.parent(stage)
            cwd = self._workdir(parent) if parent is not None else "/"
            lines, cwds = [], [cwd]
            for other in self.in_stage(stage):
                if other.cmd == "WORKDIR" and other.value:
                    cwd = resolve_path(cwd, other.value[0])
                    lines.append(other.start_line)
                    cwds.append(cwd)
            steps = memo[stage] = (lines, cwds)
        lines, cwds = steps
        return cwds[-1] if before is None else cwds[bisect.bisect_left(lines, before)]

    def env_at(self, ins: Instruction) -> dict[str, tuple[str, Instruction]] | None:
        """The ENV in effect when ``ins`` runs: name -> (value, the ENV that set it), following the stage it is
        built FROM; None for an instruction that is not this file's. Do not change the dict: copy it.

        One pass per file; consecutive instructions share one dict until an ENV changes it.
        """
        index: dict[int, dict[str, tuple[str, Instruction]]] | None = self.memo.get("env_at")
        if index is None:
            index = {}
            ends: dict[int, dict[str, tuple[str, Instruction]]] = {}
            for stage in sorted({i.stage for i in self.instructions}):
                env: dict[str, tuple[str, Instruction]] = {}
                if stage >= 0:
                    parent = self.parent(stage)
                    if parent in ends:
                        env = ends[parent]
                for other in self.in_stage(stage):
                    index[other.start_line] = env
                    if stage >= 0 and other.cmd == "ENV":
                        env = {**env, **{k: (v, other) for k, v in zip(other.value[::2], other.value[1::2])}}
                ends[stage] = env
            self.memo["env_at"] = index
        return index.get(ins.start_line)

    def user_at(self, ins: Instruction) -> str:
        """The USER in effect when ``ins`` runs: the last USER before it in its stage, else the USER the stage
        it is built FROM ends with (``FROM base`` runs as base's user), else "root"."""
        users = self.memo.get("user_at")
        if users is None:  # one pass: the USER in effect before each instruction
            users = self.memo["user_at"] = {}
            current: dict[int, str] = {}
            starts = self.memo["user_start"] = {}
            for other in self.instructions:
                if other.stage not in current:  # a stage starts as the stage it is built FROM ended
                    parent = self.parent(other.stage) if other.stage >= 0 else None
                    current[other.stage] = current.get(parent, "root") if parent is not None else "root"
                    starts[other.stage] = current[other.stage]
                users.setdefault(other.start_line, current[other.stage])
                if other.cmd == "USER" and other.value:
                    current[other.stage] = other.value[0].split(":")[0]
        if ins.start_line in users:
            return users[ins.start_line]
        user = self.memo["user_start"].get(ins.stage, "root")  # an instruction not of this file: walk its stage
        for other in self.instructions:
            if other.start_line >= ins.start_line:
                break
            if other.stage == ins.stage and other.cmd == "USER" and other.value:
                user = other.value[0].split(":")[0]
        return user
