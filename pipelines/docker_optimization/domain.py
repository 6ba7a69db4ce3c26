"""The docker-optimization domain: what the generic agents call to analyze, fix, review, measure."""

from __future__ import annotations

import posixpath
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent_pipelines.engine.artifacts import (
    Applicability,
    Change,
    Design,
    Finding,
    Gate,
    Measurement,
    Method,
    Plan,
    RunContext,
    Task,
    short_hash,
)
from agent_pipelines.engine.domain import Declined, DomainBase, FixError
from agent_pipelines.engine.gates import delta_gate
from agent_pipelines.engine.redact import mask
from agent_pipelines.engine.tree import DirTree, GitTree, Tree, changed_paths
from agent_pipelines.pipelines.docker_optimization import analysis, policy
from agent_pipelines.pipelines.docker_optimization.model import buildgraph, copies
from agent_pipelines.pipelines.docker_optimization.model import compose as compose_mod
from agent_pipelines.pipelines.docker_optimization.model.project import Project, is_dockerfile
from agent_pipelines.pipelines.docker_optimization.ops.measure import measure_contexts
from agent_pipelines.pipelines.docker_optimization.review import model_edits, validate
from agent_pipelines.pipelines.docker_optimization.rules import Fix, pack
from agent_pipelines.pipelines.docker_optimization.rules.security import users_naming_groups

if TYPE_CHECKING:
    from agent_pipelines.pipelines.docker_optimization.incremental import Incremental


class DockerDomain(DomainBase):
    def __init__(self, run: RunContext | None = None) -> None:
        self.run = run
        self._by_commit: dict[tuple[str, bool], list[Finding]] = {}  # a commit's analysis never changes
        self._last_project: tuple[str, Project] | None = None  # (commit, the checkout's project at it)
        self.rules = pack()  # built (and checked) once per process
        self._projects: dict[str, Project] = {}  # commit -> the project of its GitTree (the last few)
        self._incremental: Incremental | None = (
            None  # the reviewer's incremental analysis, carried from one phase to the next
        )
        # commit -> (its project, its rules' raw findings and notes): what the reviewer's analysis found where
        # it started, until ops' first figures ask for it (the run's base, analyzed once, not twice)
        self._started: dict[str, tuple[Project, tuple]] = {}

    def close(self) -> None:
        if self._incremental is not None:
            self._incremental.close()
        for project in self._projects.values():
            _close(project.tree)
        self._projects.clear()
        self._started.clear()

    def _at(self, tree: Tree) -> Project:
        """The project of a commit's tree, made once per commit and derived from the last one made.

        Why: ops loads its base at every phase, and its head three times (figures, analysis, notes); a
        reviewed change's parent is the change reviewed just before. ``Project.updated`` reuses what no
        changed path touches, where ``Project(tree)`` parses every Dockerfile and compose file again.
        A checkout (not a commit) gets a fresh project.
        """
        if not isinstance(tree, GitTree) or len(tree.commit) not in (40, 64):
            return Project(tree)
        found = self._projects.pop(tree.commit, None)
        kept = self._incremental.project if self._incremental is not None else None
        if found is None and kept is not None and isinstance(kept.tree, GitTree) and kept.tree.repo == tree.repo:
            # The reviewer's analysis was just moved to the change it judges: its project serves the gates.
            found = kept if kept.tree.commit == tree.commit else None
        if found is None:
            last = next(reversed(self._projects.values()), None)
            near = (
                last.tree
                if last is not None and isinstance(last.tree, GitTree) and last.tree.repo == tree.repo
                else None
            )
            changed = changed_paths(tree.repo, near.commit, tree.commit) if near is not None else None
            # A tree of its own (closing the caller's tree does not stop its `git cat-file`), reading through
            # the one of the tree it is derived from: one process for every commit the run looks at.
            own = near.at(tree.commit, tree.label) if near is not None else GitTree(tree.repo, tree.commit, tree.label)
            found = (
                last.updated(own, changed)
                if last is not None and changed is not None and len(changed) <= 200
                else Project(own)
            )
        self._projects[tree.commit] = found
        while len(self._projects) > 4:
            gone = self._projects.pop(next(iter(self._projects))).tree
            if not any(
                isinstance(gone, GitTree) and gone.shares_reader(p.tree)
                for p in [*self._projects.values(), *([kept] if kept is not None else [])]
            ):
                _close(gone)
        return found

    def _option(self, name: str) -> Any:
        """The typed value of the pipeline's declared option ``name`` in this run (its default without a run)."""
        from agent_pipelines.pipelines.docker_optimization import PIPELINE

        return PIPELINE.option(self.run.options if self.run is not None else {}, name)

    # -- analyst ---------------------------------------------------------
    def analyze(self, root: Path | Tree, thorough: bool = False) -> list[Finding]:
        """Our rules; ``thorough`` adds hadolint's second opinion (what `pipeline analyze` reports).

        ``root`` is a checkout or a tree; a commit's (a GitTree's) analysis is made once per run.
        """
        key = (root.commit, thorough) if isinstance(root, GitTree) else None
        if key is not None and key in self._by_commit:
            return self._by_commit[key]
        kept = self._incremental  # the reviewer's, left at the phase's head: its rules' findings, plus hadolint
        started = self._started.pop(root.commit, None) if thorough and isinstance(root, GitTree) else None
        if (
            thorough
            and kept is not None
            and isinstance(root, GitTree)
            and getattr(kept.project.tree, "commit", "") == root.commit
        ):
            found = analysis.with_hadolint(kept.project, *kept.raw).findings
        elif thorough and started is not None:  # where the reviewer's analysis started (the run's base)
            found = analysis.with_hadolint(started[0], *started[1]).findings
        else:
            if isinstance(root, GitTree):
                project = self._at(root)
            elif isinstance(root, (str, Path, DirTree)):  # a checkout: the workspace's is kept per commit
                project = self._project(root)
            else:
                project = Project(root)
            found = analysis.examine(project, hadolint=thorough).findings
        if key is not None:
            self._by_commit[key] = found
        return found

    def incremental_analysis(self, repo: Path, commit: str):
        """The analysis of ``commit`` read from git objects; ``.to_commit(c).findings`` then re-runs only what
        the commits in between changed (``incremental.Incremental``; close it when done)."""
        from agent_pipelines.pipelines.docker_optimization.incremental import Incremental

        # Each phase's reviewer starts where the last one ended (its base is the last phase's head): the
        # analysis it kept moves to ``commit`` (a no-op there) instead of a full one. Closing it only stops
        # its `git cat-file`, which the next read starts again.
        last = self._incremental
        if last is not None and getattr(last.project.tree, "repo", None) == Path(repo):  # a GitTree's
            last.to_commit(commit)
            return last
        self._incremental = Incremental.at_commit(repo, commit)
        self._started = {commit: (self._incremental.project, self._incremental.raw)}
        return self._incremental

    def analyze_report(self, root: Path, **options: Any) -> Any:
        """The full analysis result `pipeline analyze` prints: findings, ignored ones, notes, rule metadata."""
        return analysis.run_analysis(root, hadolint=bool(options.get("hadolint", True)))

    def llm_context(self, root: Path, limit: int = 20_000) -> dict[str, str]:
        """What the model reads in LLM mode: Dockerfiles, compose and ignore files (each cut at ``limit`` chars)."""
        project = Project(DirTree(root))
        paths = [
            *project.dockerfiles,
            *(c.path for c in project.composes),
            *sorted(p for p in project.files if posixpath.basename(p).endswith(".dockerignore")),
        ]
        return {p: (project.text(p) or "")[:limit] for p in paths[:60]}

    def phase_for(self, path: str) -> str | None:
        """The phase a model edit of ``path`` belongs to."""
        if is_dockerfile(path) or posixpath.basename(path).endswith(".dockerignore"):
            return "dockerfiles"
        return "compose" if compose_mod.is_compose_file(path) else None

    # -- planner ---------------------------------------------------------
    def plan(
        self, findings: list[Finding], phases: list[str], unsafe: bool, root: Path | DirTree | None = None
    ) -> Plan:
        project = self._project(root) if root is not None else None
        groups: dict[tuple[str, str], list[Finding]] = {}
        skipped = []
        for f in findings:
            rule = self.rules.get(f.rule)
            if rule is None or rule.fix is None:
                continue
            if rule.phase not in phases:
                skipped.append(f"{f.rule} at {f.location}: its fix belongs to phase {rule.phase}, not run")
                continue
            groups.setdefault((rule.fix.name, f.file), []).append(f)
        tasks = []
        order = {p: i for i, p in enumerate(phases)}
        for (group, file), items in groups.items():
            rules = sorted({f.rule for f in items})
            first = self.rules[rules[0]]
            fix = first.fix
            assert fix is not None
            applicability = (
                Applicability.unsafe
                if any(self.rules[r].safety is Applicability.unsafe for r in rules)
                else Applicability.safe
            )
            rationale = " ".join(self.rules[r].summary for r in rules)
            assess = fix.assess
            if assess is not None and project is not None:
                try:  # the fix's safety depends on what the repository configures: it says so, with its values
                    safe, said = assess(project, file)
                except FixError as err:
                    safe, said = False, str(err)
                applicability = Applicability.safe if safe else Applicability.unsafe
                rationale += " " + said
            tasks.append(
                Task(
                    id=short_hash(group, file),
                    phase=first.phase,
                    title=fix.title.format(file=file, dir=posixpath.dirname(file) or "."),
                    scope=(", ".join(project.services_of(file)) or "all services") if project else "",
                    rationale=rationale,
                    fix=group,
                    file=file,
                    rules=rules,
                    finding_ids=[f.id for f in items],
                    applicability=applicability,
                    files=list(dict.fromkeys([file, *fix.writes])),
                    executable=list(fix.executable),
                    estimate="no figure predicted: ops measures the effect after the change",
                )
            )
        tasks.sort(key=lambda t: (order[t.phase], t.file, t.fix))
        return Plan(tasks=tasks, skipped=skipped)

    @staticmethod
    def applicability_of(rules: list[str]) -> Applicability:
        """The strictest fix applicability of ``rules`` (a hadolint code counts as our rule that says the same)."""
        from agent_pipelines.pipelines.docker_optimization.hadolint import SAME_AS

        codes = [c for r in rules for c in (r, *SAME_AS.get(r, ()))]
        packed = pack()
        unsafe = any(packed[c].safety is Applicability.unsafe for c in codes if c in packed)
        return Applicability.unsafe if unsafe else Applicability.safe

    model_may_edit = staticmethod(model_edits.model_may_edit)
    edit_risks = staticmethod(model_edits.edit_risks)

    def llm_tools(self, root: Path, findings: list[Finding]):
        """The read-only tools a model may call on the checkout at ``root`` (see ``model_tools``)."""
        from agent_pipelines.pipelines.docker_optimization.model_tools import tools

        return tools(root, findings)

    # -- architect -------------------------------------------------------
    def design(self, root: Path | DirTree, findings: list[Finding], plan: Plan) -> Design:
        project = self._project(root)
        contexts: list[dict[str, Any]] = [
            {"dir": c.dir, "dockerfile": c.dockerfile, "services": c.services, "inferred": c.inferred}
            for c in project.contexts
        ]
        notes = [
            f"build context {c['dir']} builds {c['dockerfile']}"
            + (f" for {', '.join(c['services'])}" if c["services"] else " (inferred: no compose service builds it)")
            for c in contexts
        ]
        return Design(
            notes=notes,
            policies={
                "cpu": policy.STATEMENT,
                "dockerignore": "one .dockerignore per context, derived from its files; never excludes a COPY source",
                "edits": "Dockerfiles: only the lines of changed instructions; compose: ruamel.yaml round-trip",
            },
            data={"contexts": contexts},
        )

    # -- implementer -----------------------------------------------------
    def apply(self, task: Task, root: Path | DirTree, design: Design) -> list[str]:
        fix = self.rules.fixes().get(task.fix)
        if fix is None or fix.apply is None:
            raise FixError(f"no fix named {task.fix}")
        project = self._project(root)
        root = _dir_tree(project).root
        written = fix.apply(project, task, design)
        for rel in written:  # all checked before any is written: a declined fix leaves the checkout as it was
            target = root / rel
            if target.is_symlink() or not target.resolve().is_relative_to(root.resolve()):
                raise Declined(
                    f"{rel} resolves outside the repository; not written",  # a symlink: never followed
                    f"edit the file {rel} points to by hand, if it is yours",
                )
        for rel, text in written.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            if text.startswith("#!"):
                target.chmod(target.stat().st_mode | 0o111)  # scripts are committed executable
        return sorted(written)

    def _project(self, root: Path | DirTree) -> Project:
        """The checkout's project: for a tree the workspace keeps at a commit, the last one updated for the
        paths the commits in between changed (parsed files reused), instead of loaded afresh per task."""
        tree = _checkout(root)
        if not tree.commit:
            return Project(tree)
        last = self._last_project
        if last is not None and _dir_tree(last[1]).root == tree.root:
            if last[0] == tree.commit:
                return last[1]
            project = last[1].updated(tree, changed_paths(tree.root, last[0], tree.commit))
        else:
            project = Project(tree)
        self._last_project = (tree.commit, project)
        return project

    # -- reviewer --------------------------------------------------------
    def reviews_commits(self) -> bool:
        """Every gate reads the change's tree (a GitTree of its commit), but --verify-builds: builds and
        BuildKit's checks read a directory, so the reviewer then moves the checkout to each change."""
        return not self._option("verify_builds")

    def review_ahead(self, repo: Path, changes: list[Change]) -> None:
        """hadolint lints the Dockerfiles the changes wrote in a few processes, not one per change: its results
        are kept by text (``hadolint.run``), so each change's parse gate (``parse_problems``) then finds its
        text linted. The texts are read from the commits; one that can't be read is linted by its gate."""
        from agent_pipelines.pipelines.docker_optimization import hadolint as hadolint_mod

        wanted = [(c.commit, p) for c in changes if c.commit for p in c.files if is_dockerfile(p)]
        if len(wanted) < 2:
            return
        texts: dict[str, str] = {}
        with GitTree(repo, wanted[0][0]) as tree:
            for commit, path in wanted:
                try:
                    data = tree.object(f"{commit}:{path}")
                except (KeyError, OSError):
                    continue
                if b"\0" not in data:  # as the project reads it: text, with replacement characters
                    texts[f"{len(texts)}/Dockerfile"] = data.decode("utf-8", errors="replace")
        names = list(texts)
        for start in range(0, len(names), 40):  # each well within hadolint's time budget
            part = names[start : start + 40]
            hadolint_mod.run(part, texts={n: texts[n] for n in part})

    def _change_project(self, root: Path | Tree) -> Project:
        """The project of a reviewed change: its commit's (``_at``), or the checkout's (``_project``)."""
        return self._project(root) if isinstance(root, (Path, DirTree)) else self._at(root)

    def review(self, task: Task, change: Change, root: Path | Tree, base: Tree, design: Design) -> list[Gate]:
        """Gates for one change, each judged against the change's parent (``base``): see ``engine.gates``.

        A Dockerfile built under several contexts is checked under every one of
        them; a context where its COPY sources were already missing before the
        change is reported as such and never reverts it.
        """
        project = self._change_project(root)
        parent = _Lazy(lambda: self._at(base))
        gates: list[Gate] = []
        touched_contexts: set[str] = set()
        for path in change.files:
            if is_dockerfile(path):
                df = project.dockerfiles.get(path)
                after = [df.error] if df is not None and df.error else [] if df is not None else ["the file is gone"]
                gates.append(
                    delta_gate(
                        f"{path} parses (BuildKit parser)", after, lambda path=path: _parse_errors(parent(), path)
                    )
                )
                if df is not None and not df.error:
                    gates += self._dockerfile_gates(path, df, project, parent, base)
                    gates.append(
                        delta_gate(
                            f"{path} switches to users, never to groups",
                            users_naming_groups(df),
                            lambda path=path: _group_users(parent(), path),
                            ok="every USER names a user",
                        )
                    )
                touched_contexts.update(c.dir for c in project.contexts_of(path))
            elif compose_mod.is_compose_file(path):
                gates += self._compose_gates(task, path, project, base)
            elif posixpath.basename(path).endswith(".dockerignore"):
                touched_contexts.update(
                    c.dir for c in project.contexts if path in (c.ignore_path, c.default_ignore_path)
                )
            else:
                text = project.text(path)
                if text is not None:
                    gates += validate.gates_for(
                        path, text, project.tree, _before_text(base, path)
                    )  # bake, workflow, scripts
        for ctx in project.contexts:
            if ctx.dir not in touched_contexts and ctx.dockerfile not in change.files:
                continue
            df = project.dockerfiles.get(ctx.dockerfile)
            if df is None or df.error:
                continue
            broken = [why for _source, why in copies.problems(ctx, df)]
            gate = delta_gate(
                f"COPY sources of {ctx.dockerfile} in context {ctx.dir}",
                broken,
                lambda ctx=ctx, now=broken: _copy_problems(parent(), ctx.dir, ctx.dockerfile, now),
                ok="all present and sent",
            )
            if gate.already:  # say which file builds it so, so the user knows where the broken context comes from
                who = (
                    f"context {ctx.dir} set by {', '.join(ctx.compose_files)}"
                    if ctx.compose_files
                    else f"context {ctx.dir} inferred: no compose file builds {ctx.dockerfile}"
                )
                gate = gate.model_copy(update={"already": f"{gate.already} ({who})"})
            gates.append(gate)
            if not broken and self._option("verify_builds"):
                from agent_pipelines.pipelines.docker_optimization.ops.builds import compose_options

                for options in compose_options(ctx):  # each target / build args compose builds it with
                    gates.append(  # --verify-builds: the reviewer gave the checkout (``reviews_commits``)
                        self._start_gate(_dir_tree(project).root, ctx, base, task, project.tree.commit, options)
                    )
        return gates

    def _verified(self, commit: str, ctx, options: tuple[str, ...], make):
        """One build-and-start per (commit, context, Dockerfile) in a run: a change's head is the next
        change's parent, so its result is not built and waited for twice."""
        if not commit:
            return make(), True
        cache = self.__dict__.setdefault("_started", {})
        key = (commit, ctx.dir, ctx.dockerfile, options)
        fresh = key not in cache
        if fresh:
            cache[key] = make()
        return cache[key], fresh

    def _start_gate(
        self, root: Path, ctx, base: Tree, task: Task | None = None, commit: str = "", options: tuple[str, ...] = ()
    ) -> Gate:
        """--verify-builds: the image builds (with the layer cache) and starts, and its HEALTHCHECK reports
        healthy within the HEALTHCHECK's own bounds, or the probe .pipeline.yaml configures exits 0 (within
        its ``probe_timeout``). A delta gate: the parent is tried too, only when the change's head fails,
        and a problem it had as well never reverts the change. An engine that isn't there, a base image
        that can't be had, or an image with neither a HEALTHCHECK nor a probe: not verified, never passed.
        A multi-stage rewrite also builds the parent, for the image size before and after."""
        import tempfile

        from agent_pipelines.pipelines.docker_optimization.ops.builds import export_tree, verify_image

        how = f" {' '.join(options)}" if options else ""
        name = f"{ctx.dockerfile} builds and starts in context {ctx.dir} (docker build{how}, docker run)"
        engine = self._engine()
        if not engine.ok:  # could not run: not passed, the change stands unverified
            return Gate(name=name, passed=False, verified=False, detail=f"not verified: {engine.reason}")
        config = policy.load(ctx.project).dockerfiles.get(ctx.dockerfile, {})
        command, limit = config.get("probe"), config.get("probe_timeout")
        limit = float(limit) if isinstance(limit, (int, float)) and limit > 0 else None
        head, fresh = self._verified(commit, ctx, options, lambda: verify_image(root, ctx, command, limit, options))
        parent: list = []

        def at_parent():
            if not parent:
                commit = getattr(base, "commit", "")
                old = next(
                    (c for c in Project(base).contexts if (c.dir, c.dockerfile) == (ctx.dir, ctx.dockerfile)), None
                )
                if not commit or old is None or self.run is None:
                    parent.append(None)
                else:

                    def make():
                        with tempfile.TemporaryDirectory(prefix="pipeline-start-") as tmp:
                            return verify_image(
                                export_tree(Path(self.run.worktree), commit, Path(tmp)), old, command, limit, options
                            )

                    parent.append(self._verified(commit, old, options, make)[0])
            return parent[0]

        sizes = ""
        if task is not None and task.fix == "multistage" and head.size is not None:
            was = at_parent()
            if was is not None and was.size is not None:
                sizes = (
                    f"; image size {was.size / 1e6:.1f} MB before, {head.size / 1e6:.1f} MB after "
                    f"({(head.size - was.size) / 1e6:+.1f} MB, docker image inspect)"
                )
        took = (
            ("" if not head.seconds else f"; {head.seconds:.1f} s to build and start")
            if fresh
            else f"; checked before in this run at commit {commit[:10]}, not rebuilt"
        )
        if not head.problem:
            if not head.verified:
                return Gate(name=name, passed=False, verified=False, detail=head.detail + sizes + took)
            return Gate(name=name, passed=True, detail=head.detail + sizes + took)

        def before() -> list[str]:
            was = at_parent()
            return [was.problem] if was is not None and was.problem else []

        gate = delta_gate(name, [head.problem], before)
        return gate.model_copy(
            update={
                "detail": f"{gate.detail}: {head.detail}{sizes}{took}"
                if not gate.passed
                else f"{gate.detail} ({head.detail}){sizes}{took}"
            }
        )

    def targeted_gate(
        self,
        task: Task,
        change: Change,
        root: Path | Tree,
        base: Tree,
        after: list[Finding],
        findings: list[Finding],
    ) -> Gate:
        """The task's findings are gone, by every source that reported them: our rules (``after``, the
        re-analysis), hadolint re-run on the task's Dockerfile, and, for a model's finding (LLM001),
        the instruction it cited no longer standing unchanged. A change that only edits comments or
        whitespace (``# fixed DL3013``) clears nothing.
        """
        from agent_pipelines.pipelines.docker_optimization import hadolint as hadolint_mod

        name = "targeted findings gone"
        project = self._change_project(root)
        if change.files and all(validate.same_meaning(f, _before_text(base, f), project.text(f)) for f in change.files):
            return Gate(
                name=name,
                passed=False,
                detail="the change only edits comments or whitespace: it clears "
                "nothing (" + ", ".join(task.rules) + " still there)",
            )
        left = [f"{f.rule} at {f.location}" for f in after if f.file == task.file and f.rule in task.rules]
        df = project.dockerfiles.get(task.file)
        if df is not None and not df.error and any(r.startswith(("DL", "SC")) for r in task.rules):
            tree = project.tree
            if isinstance(tree, DirTree):
                config = next((c for c in hadolint_mod.CONFIG_NAMES if (tree.root / c).is_file()), "")
                done = hadolint_mod.run([task.file], root=tree.root, config=config)
            else:  # a commit: hadolint reads the text (and the repository's config) from a temporary directory
                config = next((c for c in hadolint_mod.CONFIG_NAMES if c in project.files), "")
                done = hadolint_mod.run(
                    [task.file],
                    texts={task.file: df.text},
                    config=config,
                    config_text=project.text(config) if config else None,
                )
            if done.status != "ran":
                return Gate(
                    name=name,
                    passed=False,
                    verified=False,
                    detail="not verified: hadolint could not "
                    "re-check " + ", ".join(task.rules) + ": " + next((m for _, m in done.notes), done.status),
                )
            if any(r.get("code") == "DL1000" for r in done.results):  # silence from a parser that failed
                left.append(f"{', '.join(task.rules)}: hadolint can't parse {task.file} any more, so can't confirm")
            theirs, _, _, _ = hadolint_mod.to_findings(done.results, {task.file: df}, after)
            left += [f"{f.rule} at {f.location} (hadolint)" for f in theirs if f.rule in task.rules]
        text = mask(project.text(task.file) or "")  # as the findings cite it: secrets masked
        lines, flat = {ln.strip() for ln in text.splitlines()}, " ".join(text.split())
        for f in findings:
            cited = f.evidence.strip()
            if f.source == "llm" and (cited in lines or "\n" in cited and " ".join(cited.split()) in flat):
                left.append(
                    f"{f.rule} at {f.location} (the cited instruction `{f.evidence.strip()[:80]}` is unchanged)"
                )
        if left:
            return Gate(name=name, passed=False, detail="still there: " + ", ".join(dict.fromkeys(left)))
        return Gate(name=name, passed=True, detail=f"{', '.join(task.rules)} cleared in {task.file}")

    def _dockerfile_gates(self, path: str, df, project: Project, parent, base: Tree) -> list[Gate]:
        """What a build refuses though BuildKit's parser read it: instruction checks, hadolint's parser and,
        with an engine, BuildKit's build checks (``docker build --check``). Each judged against the parent."""
        from agent_pipelines.pipelines.docker_optimization.hadolint import parse_problems

        gates = [
            delta_gate(
                f"{path}: instructions, flags and --from stages a build accepts",
                validate.instruction_problems(df),
                lambda: _instruction_problems(parent(), path),
                ok="all known",
            )
        ]
        name = f"{path} parses (hadolint)"
        problems, why = parse_problems(path, df.text)
        if why:
            gates.append(Gate(name=name, passed=False, verified=False, detail=f"not verified: {why}"))
        else:
            before = _before_text(base, path)
            gates.append(delta_gate(name, problems, lambda: parse_problems(path, before)[0] if before else []))
        check = self._check_gate(project, path, base)
        return gates + ([check] if check is not None else [])

    def _engine(self):
        """The Docker engine, probed once per run (reachable or why not)."""
        if not hasattr(self, "_probed"):
            from agent_pipelines.pipelines.docker_optimization.ops.builds import probe

            self._probed = probe()
        return self._probed

    def _check_gate(self, project: Project, path: str, base: Tree) -> Gate | None:
        """``docker build --check`` (BuildKit's build checks) under ``--verify-builds`` (it may resolve base
        images); "not verified" without an engine or where the engine's builder doesn't support it."""
        if not self._option("verify_builds"):
            return None
        name = f"{path} passes BuildKit's build checks (docker build --check)"
        if not self._engine().ok:
            return Gate(name=name, passed=False, verified=False, detail=f"not verified: {self._engine().reason}")
        ctx = next(iter(project.contexts_of(path)), None)
        if ctx is None:
            return None
        warnings, why = _build_checks(_dir_tree(project).root, ctx.dir, path, None)
        if why:
            return Gate(name=name, passed=False, verified=False, detail=f"not verified: {why}")
        before = _before_text(base, path)
        return delta_gate(
            name,
            warnings,
            lambda: _build_checks(_dir_tree(project).root, ctx.dir, path, before)[0] if before else [],
            ok="no warnings",
        )

    def _compose_gates(self, task: Task, path: str, project: Project, base: Tree) -> list[Gate]:
        after = next((c for c in project.composes if c.path == path), None)
        try:
            before = compose_mod.load(path, base.read(path).decode("utf-8", errors="replace"))
        except KeyError:
            before = None  # the change created the file: every problem in it is new
        parse_error = [after.error] if after is not None and after.error else [] if after else ["the file is gone"]
        gates = [delta_gate(f"{path} parses (YAML)", parse_error, [before.error] if before and before.error else [])]
        if parse_error or after is None:  # no file is a parse error too
            return gates
        errors = compose_mod.schema_errors(after.data)
        gates.append(
            delta_gate(
                f"{path} valid against the compose-spec schema",
                errors,
                lambda: compose_mod.schema_errors(before.data) if before and not before.error else [],
            )
        )
        gates.append(
            delta_gate(
                f"{path} interpolates (compose's ${{VAR}} syntax)",
                validate.interpolation_problems(after.data),
                lambda: validate.interpolation_problems(before.data) if before and not before.error else [],
                ok="every $ reference is one compose reads",
            )
        )
        if before is None or before.error:
            return gates
        # A model edit may change one service's keys but nothing at the top level.
        fix = self.rules.fixes().get(task.fix)
        allowed = fix.compose_keys if isinstance(fix, Fix) else (("services", "*"),) if task.fix == "llm" else ()
        stray = [p for p in diff_paths(plain(before.data), plain(after.data)) if not _allowed(p, allowed)]
        gates.append(
            Gate(
                name=f"{path} changed only the intended keys",
                passed=not stray,
                detail="unexpected: " + ", ".join("/".join(p) for p in stray[:5])
                if stray
                else "only " + ", ".join("/".join(k) for k in allowed),
            )
        )
        return gates

    # -- ops -------------------------------------------------------------
    def measure(self, phase: str, base: Tree, head: Tree, design: Design) -> list[Measurement]:
        figures = self._static_figures(phase, base, head)
        # A run started from Python without "builds" (the CLI always records it) never builds unasked.
        if (
            self.run
            and phase == self.run.phases[-1]
            and "builds" in self.run.options
            and self._option("builds") != "off"
        ):
            figures += self._build_figures(phase, base, head)
        return figures

    def phase_notes(self, phase: str, head: Tree) -> list[str]:
        """What the build and deploy phase reports explain: build order, parallel groups, rollout and health gates."""
        if phase not in ("build", "deploy"):
            return []
        from agent_pipelines.pipelines.docker_optimization.generate.targets import phase_notes

        project = self._at(head)
        return buildgraph.build_order_summary(project) + phase_notes(project, phase)

    def _build_figures(self, phase: str, base: Tree, head: Tree) -> list[Measurement]:
        """Real builds of every service whose build inputs the run changed (base commit vs branch tip)."""
        from agent_pipelines.pipelines.docker_optimization.ops.builds import (
            changed_builds,
            changed_paths,
            measure_services,
        )

        assert self.run is not None  # measure builds only in a run
        changed = changed_paths(Path(self.run.worktree), base.commit, head.commit)
        builds = changed_builds(Project(base), Project(head), changed)
        return measure_services(
            phase,
            Path(self.run.worktree),
            base.commit,
            head.commit,
            builds,
            self._option("build_repeats"),
            self._option("build_budget"),
            self._option("build_jobs"),
        )

    def _static_figures(self, phase: str, base: Tree, head: Tree) -> list[Measurement]:
        first = phase == (self.run.phases[0] if self.run else phase)
        before = self._at(base)
        after = before if first else self._at(head)
        figures = measure_contexts(phase, base, None if first else head, project=self._at)
        found_before = self.analyze(base, thorough=True)
        found_after = found_before if first else self.analyze(head, thorough=True)
        trees = base.label if first else f"{base.label} and {head.label}"

        def figure(name: str, items: list[Finding], baseline: list[Finding] | None, how: str) -> Measurement:
            return Measurement(
                name=name,
                subject="repository",
                phase=phase,
                value=len(items),
                baseline=None if baseline is None else len(baseline),
                method=Method.computed,
                how=how,
            )

        warn = lambda items: [f for f in items if f.severity.rank >= 1]  # noqa: E731
        figures.append(
            figure(
                "findings at warning or above",
                warn(found_after),
                None if first else warn(found_before),
                f"the analyzer's {len(self.rules)} rules and hadolint run on {trees} (as `pipeline analyze` does)",
            )
        )
        scanned = (
            f"security scan of {trees}: {len(after.dockerfiles)} Dockerfiles, {len(after.composes)} compose files, "
            f"{len({c.dir for c in after.contexts})} build contexts ({sum(len(c.sent()) for c in after.contexts)} "
            f"files sent), rules " + ", ".join(sorted(r.code for r in self.rules if r.category.value == "security"))
        )
        for severity in ("error", "warning", "info"):
            pick = lambda items: [f for f in items if f.category.value == "security" and f.severity.value == severity]  # noqa: E731,B023
            figures.append(
                figure(
                    f"security findings ({severity})", pick(found_after), None if first else pick(found_before), scanned
                )
            )
        return figures


def _dir_tree(project: Project) -> DirTree:
    """A checkout's project's tree (``_project`` makes it on a ``DirTree``)."""
    assert isinstance(project.tree, DirTree)
    return project.tree


def _checkout(root: Path | DirTree) -> DirTree:
    """The checkout as a tree: the agent's (whose file list the workspace keeps) or a walk of the directory."""
    return root if isinstance(root, DirTree) else DirTree(Path(root))


class _Lazy:
    """A value made on first call (the parent's project is loaded only when a gate has problems to compare)."""

    def __init__(self, make) -> None:
        self.make, self.value, self.made = make, None, False

    def __call__(self):
        if not self.made:
            self.value, self.made = self.make(), True
        return self.value


def _instruction_problems(project: Project, path: str) -> list[str]:
    df = project.dockerfiles.get(path)
    return validate.instruction_problems(df) if df is not None and not df.error else []


def _build_checks(root: Path, context: str, path: str, text: str | None) -> tuple[list[str], str]:
    """BuildKit's check warnings for ``path`` (or ``text`` in its place) built from ``context``, without
    line numbers; or ([], why the checks could not run)."""
    import tempfile

    from agent_pipelines.pipelines.docker_optimization.ops.builds import docker

    with tempfile.TemporaryDirectory(prefix="pipeline-check-") as tmp:
        dockerfile = str(root / path)
        if text is not None:
            dockerfile = str(Path(tmp) / "Dockerfile")
            Path(dockerfile).write_text(text, encoding="utf-8")
        try:
            done = docker("build", "--check", "-f", dockerfile, str(root / context), timeout=120)
        except subprocess.TimeoutExpired:
            return [], "docker build --check did not finish within 120 s"
    out = done.stdout + done.stderr
    warnings = [" ".join(line.split("WARNING:", 1)[1].split()) for line in out.splitlines() if "WARNING:" in line]
    warnings = [w.rsplit(" (line", 1)[0] for w in warnings]
    if done.returncode != 0 and not warnings:
        return [], "this engine's builder does not run build checks: " + " ".join(out.split())[-200:]
    return warnings, ""


def _group_users(project: Project, path: str) -> list[str]:
    df = project.dockerfiles.get(path)
    return users_naming_groups(df) if df is not None and not df.error else []


def _parse_errors(project: Project, path: str) -> list[str]:
    df = project.dockerfiles.get(path)
    return [df.error] if df is not None and df.error else []


def _copy_problems(project: Project, directory: str, dockerfile: str, now: list[str]) -> list[str]:
    """The COPY/ADD problems ``dockerfile`` had when built from ``directory`` in the parent ``project``.

    Not built so before: none (every problem is the change's). Unparsable before: it never built
    there, so whatever is missing now (``now``) was already a problem.
    """
    ctx = next((c for c in project.contexts if (c.dir, c.dockerfile) == (directory, dockerfile)), None)
    df = project.dockerfiles.get(dockerfile)
    if ctx is None or df is None:
        return []
    return now if df.error else [why for _source, why in copies.problems(ctx, df)]


def _before_text(base: Tree, path: str) -> str | None:
    try:
        return base.read(path).decode("utf-8", errors="replace")
    except KeyError:
        return None


def plain(data: object) -> object:
    if isinstance(data, dict):
        return {str(k): plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [plain(v) for v in data]
    return data


def diff_paths(a: object, b: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Key paths where two parsed documents differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                out.append(prefix + (key,))
            else:
                out += diff_paths(a[key], b[key], prefix + (key,))
        return out
    return [] if a == b else [prefix]


def _allowed(path: tuple[str, ...], allowed: tuple[tuple[str, ...], ...]) -> bool:
    for pattern in allowed:
        if len(path) >= len(pattern) and all(p == "*" or p == k for p, k in zip(pattern, path)):
            return True
    return False


def _close(tree: Tree) -> None:
    """Stop a commit's tree's `git cat-file` (a checkout's tree holds none)."""
    if isinstance(tree, GitTree):
        tree.close()
