"""The docker-optimization domain: what the generic agents call to analyze, fix, review, measure."""

from __future__ import annotations

import posixpath
from pathlib import Path

from engine.artifacts import (
    Applicability, Change, Design, Finding, Gate, Measurement, Method, Plan, RunContext, Task, short_hash,
)
from engine.domain import FixError
from engine.gates import delta_gate
from engine.tree import DirTree, GitTree, Tree, changed_paths
from pipelines.docker_optimization import analysis, buildgraph, compose as compose_mod, copies, policy, validate
from pipelines.docker_optimization.fixes import FIXES, load_all as load_fixes
from pipelines.docker_optimization.measure import measure_contexts
from pipelines.docker_optimization.project import Project, is_dockerfile
from pipelines.docker_optimization.rules import REGISTRY, load_all as load_rules
from pipelines.docker_optimization.rules.security import users_naming_groups


class DockerDomain:
    def __init__(self, run: RunContext | None = None) -> None:
        self.run = run
        self._by_commit: dict[tuple[str, bool], list[Finding]] = {}   # a commit's analysis never changes
        self._last_project: tuple[str, Project] | None = None   # (commit, the checkout's project at it)
        load_rules()
        load_fixes()

    def close(self) -> None:
        return None

    # -- analyst ---------------------------------------------------------
    def analyze(self, root: Path | Tree, thorough: bool = False) -> list[Finding]:
        """Our rules; ``thorough`` adds hadolint's second opinion (what `pipeline analyze` reports).

        ``root`` is a checkout or a tree; a commit's (a GitTree's) analysis is made once per run.
        """
        key = (root.commit, thorough) if isinstance(root, GitTree) else None
        if key is not None and key in self._by_commit:
            return self._by_commit[key]
        found = analysis.analyze(root, hadolint=thorough)
        if key is not None:
            self._by_commit[key] = found
        return found

    def incremental_analysis(self, repo: Path, commit: str):
        """The analysis of ``commit`` read from git objects; ``.to_commit(c).findings`` then re-runs only what
        the commits in between changed (``incremental.Incremental``; close it when done)."""
        from pipelines.docker_optimization.incremental import Incremental

        return Incremental.at_commit(repo, commit)

    def analyze_report(self, root: Path, hadolint: bool = True):
        """The full analysis result `pipeline analyze` prints: findings, ignored ones, notes, rule metadata."""
        return analysis.run_analysis(root, hadolint=hadolint)

    def llm_context(self, root: Path, limit: int = 20_000) -> dict[str, str]:
        """What the model reads in LLM mode: Dockerfiles, compose and ignore files (each cut at ``limit`` chars)."""
        project = Project(DirTree(root))
        paths = [*project.dockerfiles, *(c.path for c in project.composes),
                 *sorted(p for p in project.files if posixpath.basename(p).endswith(".dockerignore"))]
        return {p: (project.text(p) or "")[:limit] for p in paths[:60]}

    def phase_for(self, path: str) -> str | None:
        """The phase a model edit of ``path`` belongs to."""
        if is_dockerfile(path) or posixpath.basename(path).endswith(".dockerignore"):
            return "dockerfiles"
        return "compose" if compose_mod.is_compose_file(path) else None

    # -- planner ---------------------------------------------------------
    def plan(self, findings: list[Finding], phases: list[str], unsafe: bool, root: Path | None = None) -> Plan:
        project = Project(DirTree(root)) if root is not None else None
        groups: dict[tuple[str, str], list[Finding]] = {}
        skipped = []
        for f in findings:
            rule = REGISTRY.get(f.rule)
            if rule is None or rule.fix is Applicability.none:
                continue
            if rule.fix_group not in FIXES:
                skipped.append(f"{f.rule} at {f.location}: no fix named {rule.fix_group!r} is registered")
                continue
            if rule.phase not in phases:
                skipped.append(f"{f.rule} at {f.location}: its fix belongs to phase {rule.phase}, not run")
                continue
            groups.setdefault((rule.fix_group, f.file), []).append(f)
        tasks = []
        order = {p: i for i, p in enumerate(phases)}
        for (group, file), items in groups.items():
            rules = sorted({f.rule for f in items})
            first = REGISTRY[rules[0]]
            applicability = (Applicability.unsafe if any(REGISTRY[r].fix is Applicability.unsafe for r in rules)
                             else Applicability.safe)
            rationale = " ".join(REGISTRY[r].summary for r in rules)
            assess = FIXES[group].assess
            if assess is not None and project is not None:
                try:   # the fix's safety depends on what the repository configures: it says so, with its values
                    safe, said = assess(project, file)
                except FixError as err:
                    safe, said = False, str(err)
                applicability = Applicability.safe if safe else Applicability.unsafe
                rationale += " " + said
            tasks.append(Task(
                id=short_hash(group, file), phase=first.phase, title=FIXES[group].title.format(file=file, dir=posixpath.dirname(file) or "."),
                scope=(", ".join(project.services_of(file)) or "all services") if project else "",
                rationale=rationale, fix=group, file=file, rules=rules,
                finding_ids=[f.id for f in items], applicability=applicability,
                estimate="no figure predicted: ops measures the effect after the change"))
        tasks.sort(key=lambda t: (order[t.phase], t.file, t.fix))
        return Plan(tasks=tasks, skipped=skipped)

    # -- architect -------------------------------------------------------
    def design(self, root: Path, findings: list[Finding], plan: Plan) -> Design:
        project = Project(DirTree(root))
        contexts = [{"dir": c.dir, "dockerfile": c.dockerfile, "services": c.services, "inferred": c.inferred}
                    for c in project.contexts]
        notes = [f"build context {c['dir']} builds {c['dockerfile']}"
                 + (f" for {', '.join(c['services'])}" if c["services"] else " (inferred: no compose service builds it)")
                 for c in contexts]
        return Design(notes=notes, policies={
            "cpu": policy.STATEMENT,
            "dockerignore": "one .dockerignore per context, derived from its files; never excludes a COPY source",
            "edits": "Dockerfiles: only the lines of changed instructions; compose: ruamel.yaml round-trip",
        }, data={"contexts": contexts})

    # -- implementer -----------------------------------------------------
    def apply(self, task: Task, root: Path | DirTree, design: Design) -> list[str]:
        fix = FIXES.get(task.fix)
        if fix is None:
            raise FixError(f"no fix named {task.fix}")
        project = self._project(root)
        root = project.tree.root
        written = fix.apply(project, task, design)
        for rel, text in written.items():
            target = (root / rel)
            if target.is_symlink() or not target.resolve().is_relative_to(root.resolve()):
                raise FixError(f"{rel} resolves outside the repository; not written")
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
        if last is not None and last[1].tree.root == tree.root:
            if last[0] == tree.commit:
                return last[1]
            project = last[1].updated(tree, changed_paths(tree.root, last[0], tree.commit))
        else:
            project = Project(tree)
        self._last_project = (tree.commit, project)
        return project

    # -- reviewer --------------------------------------------------------
    def review(self, task: Task, change: Change, root: Path | DirTree, base: Tree, design: Design) -> list[Gate]:
        """Gates for one change, each judged against the change's parent (``base``): see ``engine.gates``.

        A Dockerfile built under several contexts is checked under every one of
        them; a context where its COPY sources were already missing before the
        change is reported as such and never reverts it.
        """
        project = self._project(root)
        root = project.tree.root
        parent = _Lazy(lambda: Project(base))
        gates: list[Gate] = []
        touched_contexts = set()
        for path in change.files:
            if is_dockerfile(path):
                df = project.dockerfiles.get(path)
                after = [df.error] if df is not None and df.error else [] if df is not None else ["the file is gone"]
                gates.append(delta_gate(f"{path} parses (BuildKit parser)", after,
                                        lambda path=path: _parse_errors(parent(), path)))
                if df is not None and not df.error:
                    gates.append(delta_gate(f"{path} switches to users, never to groups", users_naming_groups(df),
                                            lambda path=path: _group_users(parent(), path), ok="every USER names a user"))
                touched_contexts.update(c.dir for c in project.contexts_of(path))
            elif compose_mod.is_compose_file(path):
                gates += self._compose_gates(task, path, project, base)
            elif posixpath.basename(path).endswith(".dockerignore"):
                touched_contexts.update(c.dir for c in project.contexts if path in (c.ignore_path, c.default_ignore_path))
            else:
                text = project.text(path)
                if text is not None:
                    gates += validate.gates_for(path, text, project.tree, _before_text(base, path))  # bake, workflow, scripts
        for ctx in project.contexts:
            if ctx.dir not in touched_contexts and ctx.dockerfile not in change.files:
                continue
            df = project.dockerfiles.get(ctx.dockerfile)
            if df is None or df.error:
                continue
            broken = [why for _source, why in copies.problems(ctx, df)]
            gate = delta_gate(f"COPY sources of {ctx.dockerfile} in context {ctx.dir}", broken,
                              lambda ctx=ctx, now=broken: _copy_problems(parent(), ctx.dir, ctx.dockerfile, now), ok="all present and sent")
            if gate.already:   # say which file builds it so, so the user knows where the broken context comes from
                who = (f"context {ctx.dir} set by {', '.join(ctx.compose_files)}" if ctx.compose_files
                       else f"context {ctx.dir} inferred: no compose file builds {ctx.dockerfile}")
                gate = gate.model_copy(update={"already": f"{gate.already} ({who})"})
            gates.append(gate)
            if not broken and self.run and self.run.options.get("verify_builds") == "1":
                if task.applicability is Applicability.unsafe and is_dockerfile(ctx.dockerfile):
                    gates.append(self._start_gate(root, ctx, base))   # it may change what the image does
                else:
                    gates.append(self._build_gate(root, ctx))
        return gates

    def _start_gate(self, root: Path, ctx, base: Tree) -> Gate:
        """--verify-builds, for an unsafe change: the image builds and starts (a configured probe, or it stays
        up and its HEALTHCHECK passes). A delta gate: the parent is tried too, only when the change's head fails,
        and a problem it had as well never reverts the change."""
        import tempfile

        from pipelines.docker_optimization.builds import export_tree, probe, verify_start

        name = f"{ctx.dockerfile} builds and starts in context {ctx.dir} (docker build, docker run)"
        engine = probe()
        if not engine.ok:
            return Gate(name=name, passed=True, detail=f"not verified: {engine.reason}")
        command = policy.load(ctx.project).dockerfiles.get(ctx.dockerfile, {}).get("probe")
        problem, detail = verify_start(root, ctx, command)
        if not problem:
            return Gate(name=name, passed=True, detail=detail)

        def before() -> list[str]:
            commit = getattr(base, "commit", "")
            old = next((c for c in Project(base).contexts if (c.dir, c.dockerfile) == (ctx.dir, ctx.dockerfile)), None)
            if not commit or old is None or self.run is None:
                return []
            with tempfile.TemporaryDirectory(prefix="pipeline-start-") as tmp:
                was, _ = verify_start(export_tree(Path(self.run.worktree), commit, Path(tmp)), old, command)
            return [was] if was else []

        gate = delta_gate(name, [problem], before)
        return gate.model_copy(update={"detail": f"{gate.detail}: {detail}" if not gate.passed else
                                       f"{gate.detail} ({detail})"})

    def _build_gate(self, root: Path, ctx) -> Gate:
        """--verify-builds: the service really builds after the change (skipped, saying why, without an engine)."""
        from pipelines.docker_optimization.builds import probe, verify_build

        engine = probe()
        name = f"{ctx.dockerfile} builds in context {ctx.dir} (docker build)"
        if not engine.ok:
            return Gate(name=name, passed=True, detail=f"not built: {engine.reason}")
        passed, detail = verify_build(root, ctx)
        return Gate(name=name, passed=passed, detail=detail)

    def _compose_gates(self, task: Task, path: str, project: Project, base: Tree) -> list[Gate]:
        after = next((c for c in project.composes if c.path == path), None)
        try:
            before = compose_mod.load(path, base.read(path).decode("utf-8", errors="replace"))
        except KeyError:
            before = None   # the change created the file: every problem in it is new
        parse_error = [after.error] if after is not None and after.error else [] if after else ["the file is gone"]
        gates = [delta_gate(f"{path} parses (YAML)", parse_error, [before.error] if before and before.error else [])]
        if parse_error:
            return gates
        errors = compose_mod.schema_errors(after.data)
        gates.append(delta_gate(f"{path} valid against the compose-spec schema", errors,
                                lambda: compose_mod.schema_errors(before.data) if before and not before.error else []))
        if before is None or before.error:
            return gates
        # A model edit may change one service's keys but nothing at the top level.
        allowed = FIXES[task.fix].compose_keys if task.fix in FIXES else (("services", "*"),) if task.fix == "llm" else ()
        stray = [p for p in diff_paths(plain(before.data), plain(after.data)) if not _allowed(p, allowed)]
        gates.append(Gate(name=f"{path} changed only the intended keys", passed=not stray,
                          detail="unexpected: " + ", ".join("/".join(p) for p in stray[:5]) if stray else
                          "only " + ", ".join("/".join(k) for k in allowed)))
        return gates

    # -- ops -------------------------------------------------------------
    def measure(self, phase: str, base: Tree, head: Tree, design: Design) -> list[Measurement]:
        figures = self._static_figures(phase, base, head)
        if self.run and phase == self.run.phases[-1] and self.run.options.get("builds", "off") != "off":
            figures += self._build_figures(phase, base, head)
        return figures

    def phase_notes(self, phase: str, head: Tree) -> list[str]:
        """What the build and deploy phase reports explain: build order, parallel groups, rollout and health gates."""
        if phase not in ("build", "deploy"):
            return []
        from pipelines.docker_optimization.generate.targets import phase_notes

        project = Project(head)
        return buildgraph.build_order_summary(project) + phase_notes(project, phase)

    def _build_figures(self, phase: str, base: Tree, head: Tree) -> list[Measurement]:
        """Real builds of every service whose build inputs the run changed (base commit vs branch tip)."""
        from pipelines.docker_optimization.builds import changed_builds, changed_paths, measure_services

        changed = changed_paths(Path(self.run.worktree), base.commit, head.commit)
        builds = changed_builds(Project(base), Project(head), changed)
        repeats = int(self.run.options.get("build_repeats", "3") or 3)
        budget, jobs = self.run.options.get("build_budget"), self.run.options.get("build_jobs")
        return measure_services(phase, Path(self.run.worktree), base.commit, head.commit, builds, repeats,
                                float(budget) if budget else None, int(jobs) if jobs else None)

    def _static_figures(self, phase: str, base: Tree, head: Tree) -> list[Measurement]:
        first = phase == (self.run.phases[0] if self.run else phase)
        figures = measure_contexts(phase, base, None if first else head)
        before = Project(base)
        found_before = self.analyze(base, thorough=True)
        after = before if first else Project(head)
        found_after = found_before if first else self.analyze(head, thorough=True)
        trees = base.label if first else f"{base.label} and {head.label}"

        def figure(name: str, items: list[Finding], baseline: list[Finding] | None, how: str) -> Measurement:
            return Measurement(name=name, subject="repository", phase=phase, value=len(items),
                               baseline=None if baseline is None else len(baseline), method=Method.computed, how=how)

        warn = lambda items: [f for f in items if f.severity.rank >= 1]  # noqa: E731
        figures.append(figure("findings at warning or above", warn(found_after), None if first else warn(found_before),
                              f"the analyzer's {len(REGISTRY)} rules and hadolint run on {trees} (as `pipeline analyze` does)"))
        scanned = (f"security scan of {trees}: {len(after.dockerfiles)} Dockerfiles, {len(after.composes)} compose files, "
                   f"{len({c.dir for c in after.contexts})} build contexts ({sum(len(c.sent()) for c in after.contexts)} "
                   f"files sent), rules " + ", ".join(sorted(r.code for r in REGISTRY.values()
                                                            if r.category.value == "security")))
        for severity in ("error", "warning", "info"):
            pick = lambda items: [f for f in items if f.category.value == "security" and f.severity.value == severity]  # noqa: E731,B023
            figures.append(figure(f"security findings ({severity})", pick(found_after),
                                  None if first else pick(found_before), scanned))
        return figures


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
