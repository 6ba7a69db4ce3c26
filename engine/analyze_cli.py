"""`pipeline analyze`: a pipeline's analysis on its own, as a linter (argparse; light at start-up).

Output goes to stdout and nothing else does: the document (md, json or
sarif), complete. A one-line summary, notes and errors go to stderr.
Exit codes: 0 done, 1 a finding at ``--fail-on`` (default: error) or above unless ``--exit-zero``,
2 unusable arguments, 130 interrupted.

The pipeline's own flags (its ``analyze_options``) are added to the parser once ``--pipeline`` is known.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SEVERITIES = ("info", "warning", "error")  # engine.artifacts.Severity, without importing pydantic to parse argv
FORMATS = ("md", "json", "sarif")


class UsageError(Exception):
    """An argument the command can't use; printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage and the error on two lines; we print one
        raise UsageError(f"{message} (see `pipeline analyze --help`)")


DISTRIBUTION = "agent-pipelines"  # this project's distribution: its pipelines are found without a scan


def parser(spec=None) -> argparse.ArgumentParser:
    """The command's parser; with ``spec``, also the flags that pipeline declares (``analyze_options``)."""
    p = _Parser(
        prog="pipeline analyze",
        description="Analyze a directory and print the findings (no git, no "
        "changes). Findings ignored by `# pipeline ignore=CODE` pragmas or .pipeline.yaml are counted, "
        "not printed as findings. Output goes to stdout; anything else to stderr.",
    )
    p.add_argument(
        "--repo",
        type=Path,
        default=None,
        help="Directory to analyze (need not be a git repository; "
        "default: the current directory, or with FILEs the git repository of the first).",
    )
    p.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="Print only the findings in these files (as "
        "pre-commit passes them); the whole repository is still analyzed, so rules that read the "
        "files around them stay right.",
    )
    p.add_argument(
        "--pipeline",
        default=None,
        help="The pipeline whose analysis runs (default: the one this project ships; see `pipeline pipelines`).",
    )
    p.add_argument("--format", dest="fmt", default="md", metavar="FORMAT", help="md, json or sarif (default: md)")
    p.add_argument(
        "--fail-on",
        metavar="SEVERITY",
        default="error",
        help=f"Exit 1 if a finding at this severity or above exists ({', '.join(SEVERITIES)}; default: error).",
    )
    p.add_argument("--exit-zero", action="store_true", help="Exit 0 even when findings reach --fail-on.")
    p.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Keep and reuse results per rule and file under $XDG_CACHE_HOME/pipeline (the output is "
        "the same either way; default: off, or PIPELINE_CACHE=1). It pays only on repeated runs.",
    )
    for option in spec.analyze_options if spec is not None else ():
        if option.type is bool:
            p.add_argument(
                option.flags[0],
                dest=f"opt_{option.name}",
                action=argparse.BooleanOptionalAction,
                default=option.default,
                help=option.help,
            )
        else:
            p.add_argument(
                option.flags[0],
                dest=f"opt_{option.name}",
                default=option.default,
                help=option.help,
                metavar=option.metavar or option.type.__name__.upper(),
            )
    return p


def _spec(name: str | None):
    """The pipeline called ``name`` (None: the first this project's distribution ships). Without
    PIPELINE_PLUGINS it is loaded from this distribution's own entry points, with no scan of every installed
    distribution's metadata (~20 ms, far more on a crowded site-packages); otherwise by the full lookup."""
    if not os.environ.get("PIPELINE_PLUGINS"):
        from importlib.metadata import PackageNotFoundError, distribution

        try:
            shipped = list(distribution(DISTRIBUTION).entry_points.select(group="pipeline.pipelines"))
        except PackageNotFoundError:
            shipped = []
        for ep in shipped:
            if name is None or ep.name == name:
                return ep.load()
    from agent_pipelines.engine.spec import PipelineLookupError, find_pipeline, loaded_pipelines

    try:
        if name is None:
            installed = loaded_pipelines()
            if len(installed) != 1:
                raise UsageError(
                    f"{len(installed)} pipelines are installed ({', '.join(sorted(installed))}); pass --pipeline NAME"
                )
            return next(iter(installed.values()))
        return find_pipeline(name)
    except PipelineLookupError as error:
        raise UsageError(str(error)) from None


def analysis_result(spec, root: Path, options: dict | None = None, tree=None):
    """The pipeline's full analysis: its light ``analyze`` entry (given ``tree``, the walk of ``root``, when
    there is one), else its domain's ``analyze_report`` (``DomainBase``'s: the findings alone). ``options``: the typed
    values of the pipeline's ``analyze_options`` by name (their defaults when not given)."""
    options = {o.name: o.default for o in spec.analyze_options} | (options or {})
    if spec.analyze is not None:
        return spec.analyze(tree if tree is not None else root, options)
    domain = spec.domain(None)
    try:
        return domain.analyze_report(root, **options)
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
        known, _ = parser().parse_known_args([a for a in argv if a not in ("-h", "--help")])
        spec = _spec(known.pipeline)
        args = parser(spec).parse_args(argv)
        options = {o.name: o.check(getattr(args, f"opt_{o.name}")) for o in spec.analyze_options}
        if args.fmt not in FORMATS:
            raise UsageError(f"--format must be md, json or sarif, not {args.fmt!r}")
        if args.fail_on not in SEVERITIES:
            raise UsageError(f"--fail-on must be one of {', '.join(SEVERITIES)}, not {args.fail_on!r}")
        args.repo = args.repo or (_repository_of(args.files[0]) if args.files else Path("."))
        if not args.repo.is_dir():
            raise UsageError(f"{args.repo} is not a directory; pass --repo with the path of your repository")
    except (UsageError, ValueError) as error:  # ValueError: engine.spec.OptionError, a flag's bad value
        sys.stderr.write(f"error: {error}\n")
        return 2
    from agent_pipelines.engine.tree import DirTree

    if args.cache is not None:
        os.environ["PIPELINE_CACHE"] = "1" if args.cache else "0"  # read by the pipeline's analyze entry
    root = args.repo.resolve()
    try:
        wanted = {f.resolve().relative_to(root).as_posix() for f in args.files}
    except ValueError:
        sys.stderr.write(f"error: every FILE must be inside the analyzed directory {root}\n")
        return 2
    tree = DirTree.walked_aside(root)  # the walk runs on another core while the analysis imports
    try:
        result = analysis_result(spec, root, options, tree)
    finally:
        tree.close()
    if args.files:
        result.findings = [f for f in result.findings if f.file in wanted]
        result.ignored = [i for i in result.ignored if i.finding.file in wanted]
    from agent_pipelines.engine.findings_output import render

    sys.stdout.write(render(result, args.fmt, root))
    sys.stdout.flush()
    if args.fmt != "md":
        sys.stderr.write(_summary(result) + "\n")
    threshold = SEVERITIES.index(args.fail_on)
    if not args.exit_zero and any(f.severity.rank >= threshold for f in result.findings):
        return 1
    return 0
