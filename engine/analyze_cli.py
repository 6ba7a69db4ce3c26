"""`pipeline analyze`: a pipeline's analysis on its own, as a linter (argparse; light at start-up).

Output goes to stdout and nothing else does: the document (md, json or
sarif), complete. A one-line summary, notes and errors go to stderr.
Exit codes: 0 done, 1 a finding at ``--fail-on`` or above, 2 unusable arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SEVERITIES = ("info", "warning", "error")   # engine.artifacts.Severity, without importing pydantic to parse argv
FORMATS = ("md", "json", "sarif")


class UsageError(Exception):
    """An argument the command can't use; printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage and the error on two lines; we print one
        raise UsageError(f"{message} (see `pipeline analyze --help`)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pipeline analyze", description="Analyze a directory and print the findings (no git, no "
                "changes). Findings ignored by `# pipeline ignore=CODE` pragmas or .pipeline.yaml are counted, "
                "not printed as findings. Output goes to stdout; anything else to stderr.")
    p.add_argument("--repo", type=Path, default=None, help="Directory to analyze (need not be a git repository; "
                   "default: the current directory, or with FILEs the git repository of the first).")
    p.add_argument("files", nargs="*", type=Path, metavar="FILE", help="Print only the findings in these files (as "
                   "pre-commit passes them); the whole repository is still analyzed, so rules that read build "
                   "contexts and compose files stay right.")
    p.add_argument("--pipeline", default="docker-optimization", help="The pipeline whose analysis runs.")
    p.add_argument("--format", dest="fmt", default="md", metavar="FORMAT", help="md, json or sarif (default: md)")
    p.add_argument("--fail-on", metavar="SEVERITY", help="Exit 1 if a finding at this severity or above exists "
                   f"({', '.join(SEVERITIES)}).")
    p.add_argument("--hadolint", action=argparse.BooleanOptionalAction, default=True,
                   help="Also run hadolint (one process) and merge its findings (default: on).")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=None,
                   help="Keep and reuse results per rule and file under $XDG_CACHE_HOME/pipeline (the output is "
                   "the same either way; default: off, or PIPELINE_CACHE=1). It pays only on repeated runs.")
    return p


def _default_spec(name: str):
    """The bundled pipeline without scanning installed distributions' metadata (~20 ms); others (and any
    pipeline when PIPELINE_PLUGINS may replace one) by the full lookup."""
    if name == "docker-optimization" and not os.environ.get("PIPELINE_PLUGINS"):
        from pipelines.docker_optimization import PIPELINE

        return PIPELINE
    from engine.spec import PipelineLookupError, find_pipeline

    try:
        return find_pipeline(name)
    except PipelineLookupError as error:
        raise UsageError(str(error)) from None


def analysis_result(spec, root: Path, hadolint: bool, tree=None):
    """The pipeline's full analysis: its light ``analyze`` entry (given ``tree``, the walk of ``root``, when
    there is one), else its domain's ``analyze_report``, else its findings alone."""
    if spec.analyze is not None:
        return spec.analyze(tree if tree is not None else root, hadolint)
    from engine.findings_output import AnalysisResult, Note

    domain = spec.domain(None)
    try:
        report = getattr(domain, "analyze_report", None)
        if report is not None:
            return report(root, hadolint=hadolint)
        notes = [Note(kind="tool", message="this pipeline has no hadolint option")] if hadolint else []
        return AnalysisResult(findings=domain.analyze(root), notes=notes)
    finally:
        domain.close()


def _repository_of(file: Path) -> Path:
    """The git repository (work tree) holding ``file``: its nearest parent with a ``.git``, else the current
    directory (pre-commit runs hooks from the repository's root, with paths relative to it)."""
    for parent in file.resolve().parents:
        if (parent / ".git").exists():
            return parent
    return Path(".")


def _summary(result) -> str:
    """One line on stderr for machine formats (stdout holds only the document)."""
    line = f"{len(result.findings)} findings"
    if result.ignored:
        line += f", {len(result.ignored)} ignored by pragmas/config"
    if result.notes:
        line += f", {len(result.notes)} notes"
    return line


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
        if args.fmt not in FORMATS:
            raise UsageError(f"--format must be md, json or sarif, not {args.fmt!r}")
        if args.fail_on is not None and args.fail_on not in SEVERITIES:
            raise UsageError(f"--fail-on must be one of {', '.join(SEVERITIES)}, not {args.fail_on!r}")
        args.repo = args.repo or (_repository_of(args.files[0]) if args.files else Path("."))
        if not args.repo.is_dir():
            raise UsageError(f"{args.repo} is not a directory; pass --repo with the path of your repository")
    except UsageError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    from engine.tree import DirTree

    if args.cache is not None:
        os.environ["PIPELINE_CACHE"] = "1" if args.cache else "0"   # read by the pipeline's analyze entry
    root = args.repo.resolve()
    try:
        wanted = {f.resolve().relative_to(root).as_posix() for f in args.files}
    except ValueError:
        sys.stderr.write(f"error: every FILE must be inside the analyzed directory {root}\n")
        return 2
    tree = DirTree.walked_aside(root)   # the walk runs on another core while the analysis imports
    try:
        try:
            spec = _default_spec(args.pipeline)
        except UsageError as error:
            sys.stderr.write(f"error: {error}\n")
            return 2
        result = analysis_result(spec, root, args.hadolint, tree)
    finally:
        tree.close()
    if args.files:
        result.findings = [f for f in result.findings if f.file in wanted]
        result.ignored = [i for i in result.ignored if i.finding.file in wanted]
    from engine.findings_output import render

    sys.stdout.write(render(result, args.fmt, root))
    sys.stdout.flush()
    if args.fmt != "md":
        sys.stderr.write(_summary(result) + "\n")
    threshold = SEVERITIES.index(args.fail_on) if args.fail_on else None
    if threshold is not None and any(f.severity.rank >= threshold for f in result.findings):
        return 1
    return 0
