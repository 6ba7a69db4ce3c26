"""A lint kit for pipelines: rules with their fixes, a validated rule pack, the runner, ignores, docs, output.

A pipeline writes its rules as plain functions decorated with ``rule(...)``
(``engine.lint.rules``): a code, a name, a category, a severity, what the
check receives (the pipeline's target kinds), what it reads, and the
``Fix`` that clears it, referenced as an object, with its safety and phase.
A ``RulePack`` gathers the rules of an explicit list of modules and checks
them when it is built: codes unique, every module contributes, every phase
exists, every referenced fix has its implementation. ``engine.lint.runner``
runs a pack over a project; ``engine.lint.docs`` renders its documentation.
"""

from agent_pipelines.engine.lint.rules import Fix, Hit, PackError, Rule, RulePack, rule

__all__ = ["Fix", "Hit", "PackError", "Rule", "RulePack", "rule"]
