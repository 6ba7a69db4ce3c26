"""Rules, fixes and rule packs, modelled on ruff: a code, a name, a category, a severity, a small check.

A rule is a plain function decorated with ``@rule``; its docstring is the
user-facing documentation (what it does, why it matters, example, use
instead; for an unsafe fix, a "Fix safety:" paragraph saying why). A rule
that can be fixed references its ``Fix`` object, declared in the same
module, with the fix's safety (``Applicability``) and the phase it belongs
to::

    STRIP = Fix("strip-whitespace")

    @rule("WS001", "trailing-whitespace", Category.correctness, Severity.warning, "file",
          fix=STRIP, safety=Applicability.safe, phase="fix")
    def trailing_whitespace(file) -> Iterable[Hit]:
        ...

    @STRIP.applies(title="Strip trailing whitespace in {file}")
    def strip(project, task, design) -> dict[str, str]:
        ...

Several rules may share one fix (it clears them all at once). Nothing
registers globally: ``RulePack`` collects the rules of the modules it is
given and refuses a pack that would misbehave later (see ``RulePack``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType

from agent_pipelines.engine.finding import Applicability, Category, Severity

_RULE_ATTR = "__lint_rule__"


class PackError(ValueError):
    """A rule pack that can't be built: what is wrong, naming the rule or module."""


@dataclass(frozen=True)
class Hit:
    """What a check returns: where, the evidence text, and a message for this occurrence."""

    line: int
    message: str
    evidence: str = ""
    end_line: int = 0
    file: str = ""  # overrides the target's file (e.g. a file that should exist)


@dataclass(eq=False)
class Fix:
    """A fix: a name (the plan's task names it), and the function that turns the current files into fixed ones.

    Declared first (``NAME = Fix("name")``) so that rules can reference it, then given its
    implementation with ``@NAME.applies(title=...)``. ``apply(project, task, design)`` returns
    ``{path: new text}``; ``writes`` are the files it writes besides the task's file (its commit
    may change no other), ``executable`` which of those it makes executable; ``assess(project,
    file)`` says, for a fix whose safety depends on the repository, whether it is safe there and
    what it would write. A pipeline may subclass it to add what its review needs.
    """

    name: str
    title: str = ""  # "{file}" is replaced by the task's file
    apply: Callable[..., dict[str, str]] | None = None
    writes: tuple[str, ...] = ()
    executable: tuple[str, ...] = ()
    assess: Callable[..., tuple[bool, str]] | None = None

    def applies(self, title: str, **fields: object) -> Callable[[Callable[..., dict[str, str]]], Callable]:
        """Decorator: the fix's implementation and the rest of its metadata."""
        known = {f.name for f in dataclasses.fields(self)} - {"name", "apply"}
        unknown = set(fields) - known
        if unknown:
            raise TypeError(f"fix {self.name}: unknown fields {sorted(unknown)}")

        def attach(func: Callable[..., dict[str, str]]) -> Callable[..., dict[str, str]]:
            if self.apply is not None:
                raise PackError(f"fix {self.name} has two implementations: {self.apply.__name__}, {func.__name__}")
            self.title, self.apply = title, func
            for key, value in fields.items():
                setattr(self, key, tuple(value) if isinstance(value, list) else value)
            return func

        return attach

    def __repr__(self) -> str:
        return f"Fix({self.name!r})"


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    category: Category
    severity: Severity
    target: str  # the kind of thing the check receives; the pack's pipeline defines the kinds
    check: Callable[..., Iterable[Hit]]
    fix: Fix | None = None
    safety: Applicability = Applicability.none
    phase: str = ""
    heavy: bool = False  # whole-project work: the runner may run it beside the others
    reads: tuple[str, ...] = ()  # what the check reads (incremental analysis, results cache); see RulePack

    @property
    def read_set(self) -> tuple[str, ...]:
        return self.reads

    @property
    def doc(self) -> str:
        return inspect.cleandoc(self.check.__doc__ or "")

    @property
    def summary(self) -> str:
        return self.doc.splitlines()[0] if self.doc else self.name

    @property
    def module(self) -> str:
        return self.check.__module__


def rule(
    code: str,
    name: str,
    category: Category,
    severity: Severity,
    target: str,
    fix: Fix | None = None,
    safety: Applicability = Applicability.none,
    phase: str = "",
    heavy: bool = False,
    reads: Sequence[str] = (),
) -> Callable[[Callable[..., Iterable[Hit]]], Callable[..., Iterable[Hit]]]:
    """Decorator: make a check function a rule (it stays callable as it was; the pack finds it)."""

    def declare(check: Callable[..., Iterable[Hit]]) -> Callable[..., Iterable[Hit]]:
        setattr(
            check,
            _RULE_ATTR,
            Rule(code, name, category, severity, target, check, fix, safety, phase, heavy, tuple(reads)),
        )
        return check

    return declare


def rules_of(module: ModuleType) -> list[Rule]:
    """The rules a module declares (not the ones it imports), in the order they are written."""
    found = [getattr(v, _RULE_ATTR) for v in vars(module).values() if hasattr(v, _RULE_ATTR)]
    return [r for r in found if r.module == module.__name__]


class RulePack:
    """A pipeline's rules, from an explicit list of modules, checked when built.

    ``phases`` are the pipeline's phase names; ``targets`` maps each kind of target
    the pipeline's runner gives a check to what such a check reads by default (a
    rule's ``reads`` replaces it); ``help_uri(code)`` says where a rule is documented
    (SARIF's ``helpUri``; "" for nowhere). A pack refuses: two rules with one code, a
    module that declares no rule (forgotten or emptied), a target kind it doesn't
    know, a fixable rule without a fix, a phase or a safety, a phase that doesn't
    exist, a fix that has no implementation, and an unsafe fix whose rule's doc has
    no "Fix safety:" paragraph.
    """

    def __init__(
        self,
        name: str,
        modules: Sequence[ModuleType],
        phases: Sequence[str],
        targets: Mapping[str, Sequence[str]],
        help_uri: Callable[[str], str] = lambda code: "",
    ) -> None:
        self.name = name
        self.phases = tuple(phases)
        self.help_uri = help_uri
        rules: dict[str, Rule] = {}
        problems: list[str] = []
        for module in modules:
            declared = rules_of(module)
            if not declared:
                problems.append(f"module {module.__name__} declares no rule")
            for each in declared:
                if each.code in rules:
                    problems.append(f"{each.code} is declared twice ({rules[each.code].module}, {each.module})")
                    continue
                if each.target not in targets:
                    problems.append(f"{each.code}: unknown target {each.target!r} (known: {', '.join(targets)})")
                    continue
                problems += _fix_problems(each, self.phases)
                rules[each.code] = dataclasses.replace(each, reads=each.reads or tuple(targets[each.target]))
        if problems:
            raise PackError(f"rule pack {name}: " + "; ".join(problems))
        self.rules = rules

    def __iter__(self):
        return iter(self.rules.values())

    def __len__(self) -> int:
        return len(self.rules)

    def __contains__(self, code: object) -> bool:
        return code in self.rules

    def get(self, code: str) -> Rule | None:
        return self.rules.get(code)

    def __getitem__(self, code: str) -> Rule:
        return self.rules[code]

    def fixes(self) -> dict[str, Fix]:
        """Every fix the pack's rules reference, by name."""
        return {r.fix.name: r.fix for r in self.rules.values() if r.fix is not None}


def _fix_problems(each: Rule, phases: tuple[str, ...]) -> list[str]:
    if each.fix is None:
        if each.safety is not Applicability.none or each.phase:
            return [f"{each.code}: a safety or phase without a fix"]
        return []
    problems = []
    if each.safety is Applicability.none:
        problems.append(f"{each.code}: fix {each.fix.name} needs a safety (safe or unsafe)")
    if each.phase not in phases:
        problems.append(f"{each.code}: fix {each.fix.name}'s phase {each.phase!r} is not a phase ({', '.join(phases)})")
    if each.fix.apply is None:
        problems.append(f"{each.code}: fix {each.fix.name} has no implementation (@{each.fix.name}.applies)")
    if each.safety is Applicability.unsafe and "Fix safety:" not in each.doc:
        problems.append(f"{each.code}: an unsafe fix needs a 'Fix safety:' paragraph in the rule's doc")
    return problems
