"""The docker-optimization pipeline: five phases, the way such work is really done."""

from __future__ import annotations

from pathlib import Path

from agent_pipelines.engine.spec import Option, Phase, PipelineSpec


def _domain(run):
    from agent_pipelines.pipelines.docker_optimization.domain import DockerDomain

    return DockerDomain(run)


def _analyze(root, options: dict):
    """`pipeline analyze`: with the results cache for a directory when asked (``results_cache``, ``--cache``)."""
    hadolint = options.get("hadolint", True)
    from agent_pipelines.pipelines.docker_optimization import results_cache
    from agent_pipelines.pipelines.docker_optimization.analysis import part_of, run_analysis
    from agent_pipelines.pipelines.docker_optimization.ignores import project_root

    where = root if isinstance(root, (str, Path)) else getattr(root, "root", None)
    # A subdirectory of a project whose configuration lies above it: analyze the project (its compose files
    # and contexts decide what the Dockerfiles here see) and report this directory's part, as from the root.
    project = project_root(Path(where).resolve()) if where is not None else None
    if project is not None and where is not None:  # a project is found only from a directory
        cache = results_cache.ResultsCache(project) if results_cache.enabled() else None
        return part_of(
            run_analysis(project, hadolint=hadolint, cache=cache), Path(where).resolve().relative_to(project).as_posix()
        )
    cache = results_cache.ResultsCache(Path(where)) if where is not None and results_cache.enabled() else None
    return run_analysis(root, hadolint=hadolint, cache=cache)


def _rule_docs() -> dict[str, str]:
    """Each rule's section of docs/rules.md (without its anchor), by code."""
    from agent_pipelines.engine.lint import docs
    from agent_pipelines.pipelines.docker_optimization.rules import load_all

    return {code: "\n".join(docs.section(rule)[2:]).strip() + "\n" for code, rule in load_all().items()}


PIPELINE = PipelineSpec(
    name="docker-optimization",
    description="Faster, smaller, safer, correct Docker builds across a monorepo",
    phases=(
        Phase(
            "analysis",
            "Analysis & planning",
            ("analyst", "planner", "architect", "ops"),
            "Parse every Dockerfile, compose file and build context; plan the fixes; baseline figures.",
        ),
        Phase(
            "dockerfiles",
            "Dockerfiles",
            ("implementer", "reviewer", "ops"),
            "Cache mounts, layer order, .dockerignore per context.",
        ),
        Phase("compose", "Compose", ("implementer", "reviewer", "ops"), "Resource limits, health-gated dependencies."),
        Phase("build", "Build process", ("implementer", "reviewer", "ops"), "Build graph, bake file, CI workflow."),
        Phase(
            "deploy", "Deployment", ("implementer", "reviewer", "ops"), "Ordered, health-gated rollout and rollback."
        ),
    ),
    domain=_domain,
    analyze=_analyze,
    rule_docs=_rule_docs,
    options=(
        Option(
            "builds",
            str,
            "auto",
            "Real builds for figures: auto (when an engine answers) or off.",
            choices=("auto", "off"),
        ),
        Option("build_repeats", int, 3, "Builds per scenario (the median is reported).", min=1, metavar="N"),
        Option(
            "build_budget",
            float,
            None,
            "Stop the real builds after this many seconds (default: no limit); "
            "what did not finish is reported not measured.",
            min=0,
            metavar="SECONDS",
        ),
        Option("build_jobs", int, None, "Real builds run at once (default: the engine's CPUs).", min=1, metavar="N"),
        Option(
            "verify_builds",
            bool,
            False,
            "Reviewer builds and starts each changed image (HEALTHCHECK/probe) and rejects what fails.",
        ),
    ),
    analyze_options=(
        Option("hadolint", bool, True, "Also run hadolint (one process) and merge its findings (default: on)."),
    ),
    example=Path(__file__).resolve().parent.parent.parent / "examples" / "monorepo",
)
