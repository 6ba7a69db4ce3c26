"""Incremental analysis equals a full analysis, whatever sequence of changes led there.

The differential test (hypothesis) starts from the bundled example or a small
generated monorepo (two compose files building the same Dockerfiles under
different contexts, root contexts, ignore files), applies a random sequence of
the pipeline's own fixes and of hand edits (Dockerfiles, .dockerignore files,
compose files, new and removed files, pragmas, .pipeline.yaml, .gitignore), and
after every step compares ``Incremental`` with a fresh full analysis: same
finding ids, same ignored ids, and every context sending the same files.
"""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_pipelines.engine.artifacts import Design
from agent_pipelines.engine.domain import FixError
from agent_pipelines.engine.tree import DirTree, GitTree, changed_paths
from agent_pipelines.pipelines.docker_optimization.analysis import run_analysis
from agent_pipelines.pipelines.docker_optimization.domain import DockerDomain
from agent_pipelines.pipelines.docker_optimization.incremental import Incremental
from agent_pipelines.pipelines.docker_optimization.model.buildgraph import build_graph
from agent_pipelines.pipelines.docker_optimization.model.project import Project, is_dockerfile
from agent_pipelines.pipelines.docker_optimization.rules import load_all
from agent_pipelines.pipelines.docker_optimization.rules.process import built_services
from bench.monorepo import generate
from tests.conftest import EXAMPLE, git, make_repo
from tests.rulekit import edit_and_follow, write

DESIGN = Design(policies={"host_cores": "2"})

DOCKERFILE_LINES = [
    "RUN apt-get update && apt-get install -y curl gcc",
    "COPY . .",
    "USER app",
    "HEALTHCHECK CMD curl -f http://localhost:8000/ || exit 1",
    "EXPOSE 8080",
    "RUN pip install -r requirements.txt",
    "ENV API_TOKEN=s3cr3t",
    "COPY missing.txt /app/",
    "# pipeline ignore=CA001,SE001",
    "RUN npm install",
    "RUN <<EOF",
]
IGNORE_LINES = ["*.md", "!README.md", ".env", "node_modules", "tests", "**/__pycache__", "[a-", ".git"]
NEW_FILES = {
    ".env": "SECRET=1\n",
    "id_rsa": "-----BEGIN KEY-----\n",
    "package-lock.json": "{}\n",
    "notes.md": "# notes\n",
    "data.bin": "\0\0binary\n",
}


def _compose_service(name: str, context: str, dockerfile: str) -> str:
    return (
        f"  {name}:\n    build:\n      context: {context}\n      dockerfile: {dockerfile}\n"
        "    depends_on: [redis]\n"
        '    healthcheck:\n      test: ["CMD", "curl", "-f", "http://localhost/"]\n'
    )


class Repo:
    """A working tree the steps edit; every step returns the paths it changed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def paths(self, suffix: str = "", name: str = "") -> list[str]:
        return sorted(
            p
            for p in DirTree(self.root).files()
            if (not suffix or p.endswith(suffix)) and (not name or p.rsplit("/", 1)[-1] == name)
        )

    def dockerfiles(self) -> list[str]:
        return sorted(
            p
            for p in DirTree(self.root).files()
            if p.rsplit("/", 1)[-1].startswith("Dockerfile") and not p.endswith(".dockerignore")
        )

    def dirs(self) -> list[str]:
        return sorted({p.rpartition("/")[0] or "." for p in self.dockerfiles()})

    def composes(self) -> list[str]:
        return [p for p in self.paths() if "compose" in p.rsplit("/", 1)[-1] and p.endswith((".yml", ".yaml"))]

    def write(self, path: str, text: str) -> list[str]:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return [path]

    def append(self, path: str, line: str) -> list[str]:
        return self.write(path, (self.root / path).read_text() + line + "\n")


def step(repo: Repo, data: st.DataObject) -> list[str]:
    """One random change: a fix the pipeline would make, or an edit a person would."""
    kind = data.draw(
        st.sampled_from(
            [
                "fix",
                "fix",
                "dockerfile",
                "ignore",
                "new-ignore",
                "remove",
                "compose",
                "new-dockerfile",
                "new-file",
                "config",
            ]
        )
    )
    pick = lambda items: data.draw(st.sampled_from(items)) if items else None  # noqa: E731
    if kind == "fix":
        domain = DockerDomain()
        findings = run_analysis(repo.root).findings
        tasks = domain.plan(findings, ["dockerfiles", "compose", "build", "deploy"], unsafe=True, root=repo.root).tasks
        task = pick(tasks)
        try:
            return domain.apply(task, repo.root, DESIGN) if task else []
        except FixError:  # AlreadyResolved too: nothing written
            return []
    if kind == "dockerfile":
        return repo.append(pick(repo.dockerfiles()), pick(DOCKERFILE_LINES))
    if kind == "ignore":
        ignores = repo.paths(".dockerignore")
        return repo.append(pick(ignores), pick(IGNORE_LINES)) if ignores else []
    if kind == "new-ignore":
        where = pick(repo.dirs() + [d + "/Dockerfile" for d in repo.dirs() if d != "."])
        path = (
            ".dockerignore"
            if where == "."
            else (where + ".dockerignore" if where.endswith("Dockerfile") else where + "/.dockerignore")
        )
        return repo.write(path, pick(IGNORE_LINES) + "\n")
    if kind == "remove":
        path = pick(repo.paths(".dockerignore") + repo.dockerfiles()[1:] + repo.paths(name=".env"))
        if path is None:
            return []
        (repo.root / path).unlink()
        return [path]
    if kind == "compose":
        compose = pick(repo.composes())
        df = pick(repo.dockerfiles())
        context = pick([".", df.rpartition("/")[0] or "."])
        rel = df if context == "." else df[len(context) + 1 :]
        top = compose.rpartition("/")[0]
        # paths in compose are relative to the compose file's directory
        up = "/".join(".." for _ in top.split("/")) if top else ""
        ctx = (up + ("/" + context if context != "." else "")) if up else context
        text = (repo.root / compose).read_text()
        if "\nservices:\n" not in "\n" + text:
            return []
        name = f"svc{data.draw(st.integers(0, 3))}"
        if f"\n  {name}:\n" in text:
            return []
        return repo.write(
            compose, text.replace("services:\n", "services:\n" + _compose_service(name, ctx or ".", rel), 1)
        )
    if kind == "new-dockerfile":
        where = pick(repo.dirs())
        name = pick(["Dockerfile.dev", "Dockerfile", "tool.dockerfile"])
        path = name if where == "." else f"{where}/extra/{name}"
        return repo.write(path, "FROM python:3.12\nCOPY . .\nRUN pip install -r requirements.txt\n")
    if kind == "new-file":
        where = pick(repo.dirs())
        name = pick(sorted(NEW_FILES))
        return repo.write(name if where == "." else f"{where}/{name}", NEW_FILES[name])
    # config: ignores, .gitignore
    config = "ignore: [CO002]\nper-file-ignores:\n  '**/Dockerfile': [RL006]\n"
    return pick(
        [
            lambda: repo.write(".pipeline.yaml", config),
            lambda: repo.append(".gitignore", pick([".dockerignore", "*.md", "**/.env"])),
            lambda: repo.write("docker-bake.hcl", 'group "default" { targets = [] }\n'),
        ]
    )()


def same(incremental, full) -> None:
    assert sorted(f.id for f in incremental.findings) == sorted(f.id for f in full.findings)
    assert sorted(i.finding.id for i in incremental.ignored) == sorted(i.finding.id for i in full.ignored)


def same_sends(project: Project, root: Path) -> None:
    """Every context sends what a fresh project lists (paths and sizes): asking each one also keeps its
    listing for the next step, where it follows the changed paths or the ignore file's appended patterns."""
    listed = lambda p: {(c.dir, c.dockerfile): c.sent() for c in p.contexts}  # noqa: E731
    assert listed(project) == listed(Project(DirTree(root)))


@pytest.fixture(scope="module")
def small_monorepo(tmp_path_factory) -> Path:
    """A generated monorepo at 1/40 scale: ~500 files, a few stacks building the same Dockerfiles two ways."""
    out = tmp_path_factory.mktemp("mono") / "repo"
    generate(out, scale=0.05, seed=3)
    return out


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data(), start=st.sampled_from(["example", "monorepo"]))
def test_incremental_equals_full_after_random_fixes_and_edits(tmp_path_factory, small_monorepo, data, start):
    root = tmp_path_factory.mktemp("inc") / "repo"
    shutil.copytree(EXAMPLE if start == "example" else small_monorepo, root)
    repo = Repo(root)
    with Incremental(DirTree(root)) as inc:
        same(inc.result, run_analysis(root))
        same_sends(inc.project, root)
        for _ in range(data.draw(st.integers(1, 6))):
            changed = step(repo, data)
            result = inc.files_changed(changed)
            same(result, run_analysis(root))
            same_sends(inc.project, root)


def test_a_dockerfile_edit_reruns_only_what_reads_it(tmp_path):
    """One Dockerfile changes: its Dockerfile rules run on it alone; compose-only rules don't run at all."""
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    with Incremental(DirTree(root)) as inc:
        path = "services/worker/Dockerfile"
        (root / path).write_text((root / path).read_text() + "RUN apt-get update && apt-get install -y gcc\n")
        result = inc.files_changed([path])
        assert inc.reran["SZ002"] == 1 and inc.reran["SZ001"] == 1  # that Dockerfile only, of the four
        assert inc.reran["CO001"] == 0 and inc.reran["CO008"] == 0  # compose files unchanged
        assert inc.reran["CO006"] == 0  # reads compose files only
        assert {"SZ002", "SZ001"} <= {f.rule for f in result.findings if f.file == path}
        same(result, run_analysis(root))


def test_every_rule_declares_reads_it_can_be_asked_about():
    """Each rule's reads are its target's default or words the incremental engine knows (kinds, patterns)."""
    load_all()
    for rule in load_all().values():
        assert rule.read_set, rule.code
        if rule.target != "project":
            assert set(rule.read_set) <= {
                "dockerfile",
                "context",
                "context-sizes",
                "compose",
                "dockerfiles",
                "composes",
                "dockerignores",
                "contexts",
                "tree",
            }, rule.code


def test_reviewer_adapter_follows_commits_and_reverts_from_git_objects(tmp_path):
    """What the reviewer needs: the analysis at each commit of a branch, read from git objects, no checkout.

    Commits made by applying fixes; moving back to a parent (a revert) is
    one more update. Each answer equals a full analysis of that commit.
    """
    repo = make_repo(
        tmp_path / "repo", {str(p.relative_to(EXAMPLE)): p.read_text() for p in EXAMPLE.rglob("*") if p.is_file()}
    )
    base = git(repo, "rev-parse", "HEAD")
    domain = DockerDomain()
    tasks = domain.plan(run_analysis(repo).findings, ["dockerfiles", "compose"], unsafe=False, root=repo).tasks
    commits = []
    for task in tasks[:4]:
        try:
            written = domain.apply(task, repo, DESIGN)
        except FixError:
            continue
        git(repo, "add", "--all", "--", *written)
        git(repo, "commit", "--quiet", "-m", task.title)
        commits.append(git(repo, "rev-parse", "HEAD"))
    assert commits
    with domain.incremental_analysis(repo, base) as inc:
        for commit in commits + [base, commits[-1]]:
            after = inc.to_commit(commit)
            with GitTree(repo, commit) as tree:
                same(after, run_analysis(tree))
    assert changed_paths(repo, base, commits[0])  # what to_commit reads: only the blobs that differ


STRUCTURAL = {
    "docker-compose.yml": "services:\n  api:\n    build:\n      context: .\n      dockerfile: api/Dockerfile\n"
    "  api-dev:\n    build: ./api\n",
    "api/Dockerfile": "FROM python:3.12-slim\nCOPY api/requirements.txt .\nRUN pip install -r requirements.txt\n"
    "COPY . .\nEXPOSE 8000\n",
    "api/Dockerfile.dockerignore": "tests\n",
    "api/requirements.txt": "flask\n",
    "shared/.dockerignore": "[a-\n",
    "web/.dockerignore": "node_modules\n",
    ".gitignore": ".dockerignore\n",
}


@pytest.mark.parametrize(
    "edits",
    [
        # a compose edit makes contexts of directories that had only an ignore file: PX006 and CX004 appear there
        [
            (
                "docker-compose.yml",
                STRUCTURAL["docker-compose.yml"]
                + "  shared:\n    build:\n      context: ./shared\n      dockerfile: ../api/Dockerfile\n"
                + "  web:\n    build:\n      context: ./web\n      dockerfile: ../api/Dockerfile\n",
            )
        ],
        # an ignore file shared by two contexts (Dockerfile.dockerignore): files outside the Dockerfile's directory count
        [("docs/.env", "TOKEN=1\n"), ("api/Dockerfile.dockerignore", "tests\n.env\n**/.env\n"), ("docs/.env", None)],
        # a Dockerfile appears, is built by a new service, then goes away again
        [
            ("tools/Dockerfile", "FROM node:20\nCOPY . .\nRUN npm install\n"),
            ("docker-compose.yml", STRUCTURAL["docker-compose.yml"] + "  tools:\n    build: ./tools\n"),
            ("tools/Dockerfile", None),
        ],
        # an ignore file appears beside the Dockerfile and wins over the context's; .gitignore stops hiding it
        [("api/.dockerignore", "*.md\n"), ("api/Dockerfile.dockerignore", None), (".gitignore", "*.pyc\n")],
    ],
)
def test_structural_changes_widen_to_what_they_touch(tmp_path, edits):
    root = tmp_path / "repo"
    repo = Repo(root)
    for path, text in STRUCTURAL.items():
        repo.write(path, text)
    with Incremental(DirTree(root)) as inc:
        for path, text in edits:
            if text is None:
                (root / path).unlink()
            else:
                repo.write(path, text)
            same(inc.files_changed([path]), run_analysis(root))


def test_what_contexts_send_follows_added_and_removed_files(tmp_path):
    """Sizes sent per context and secret-looking files, carried across updates, equal a fresh project's."""
    from agent_pipelines.pipelines.docker_optimization.model.context_size import sent_size
    from agent_pipelines.pipelines.docker_optimization.model.project import Project

    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    (root / ".dockerignore").write_text("node_modules\n**/*.md\ndocs\n!docs/keep.md\n")
    tree = DirTree(root)
    project = Project(tree)
    before = {(c.dir, c.dockerfile): sent_size(c) for c in project.contexts}
    assert before
    edits = [
        ("node_modules/x/index.js", "x"),
        ("services/api/.env", "A=1"),
        ("docs/keep.md", "k"),
        ("services/api/app/new.py", "print(1)\n"),
        ("services/api/requirements.txt", None),
        ("README.md", None),
    ]
    for path, text in edits:
        tree, project = edit_and_follow(root, tree, project, path, text)
        fresh = Project(DirTree(root))
        assert {(c.dir, c.dockerfile): sent_size(c) for c in project.contexts} == {
            (c.dir, c.dockerfile): sent_size(c) for c in fresh.contexts
        }
        assert project.sorted_paths == fresh.sorted_paths and project.sorted_sizes == fresh.sorted_sizes


def test_what_contexts_send_follows_files_that_change_size(tmp_path):
    """Files that only grow or shrink (sent, excluded, re-included) move each context's sent size as a fresh
    project counts it, and an edited ignore file is parsed again, not taken from the project before."""
    from agent_pipelines.pipelines.docker_optimization.model.context_size import sent_size
    from agent_pipelines.pipelines.docker_optimization.model.project import Project

    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    (root / ".dockerignore").write_text("**/*.md\ndocs\n!docs/keep.md\n")
    (root / "docs" / "keep.md").write_text("k")
    (root / "docs" / "drop.txt").write_text("d")
    tree = DirTree(root)
    project = Project(tree)
    assert {(c.dir, c.dockerfile): sent_size(c) for c in project.contexts}
    edits = [
        ("docs/keep.md", "kept, and longer now"),  # re-included
        ("docs/drop.txt", "excluded, and longer now"),
        ("services/api/requirements.txt", "flask\nrequests\ngunicorn\n"),  # sent by the api context
        ("README.md", "#"),  # at the top of the root context, excluded there
        (".dockerignore", "**/*.md\n"),  # same size class of change: a new ignore file is parsed again
        ("docs/drop.txt", "d"),
    ]
    for path, text in edits:
        (root / path).write_text(text)
        tree = tree.updated([path])
        project = project.updated(tree, [path])
        fresh = Project(DirTree(root))
        assert {(c.dir, c.dockerfile): (c.ignore.key, sent_size(c)) for c in project.contexts} == {
            (c.dir, c.dockerfile): (c.ignore.key, sent_size(c)) for c in fresh.contexts
        }, path


def test_ignore_verdicts_follow_pragmas_and_the_configuration(tmp_path):
    """What ignores a finding is asked again for the files that changed and when the configuration changes;
    the verdicts of other findings carry over. Each step equals a full analysis, down to what ignored what."""
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)

    def verdicts(result) -> tuple[list[str], list[tuple[str, str]]]:
        return sorted(f.id for f in result.findings), sorted((i.finding.id, i.by) for i in result.ignored)

    with Incremental(DirTree(root)) as inc:
        first = next(f for f in inc.result.findings if is_dockerfile(f.file) and f.line > 1)
        lines = (root / first.file).read_text().splitlines(keepends=True)
        lines.insert(first.line - 1, "\n")
        spaced = "".join(lines)
        lines[first.line - 1] = f"# pipeline ignore={first.rule}\n"
        other = next(f for f in inc.result.findings if f.file != first.file and f.rule != first.rule)
        steps = [
            (first.file, spaced),  # a blank line above the finding (its line, so its id, moves)
            (first.file, "".join(lines)),  # that line becomes a pragma: the same findings, ids and lines
            (".pipeline.yaml", f"ignore: [{other.rule}]\n"),
            (".pipeline.yaml", f"per-file-ignores:\n  '{other.file}': [{other.rule}]\n"),
            (".pipeline.yaml", None),
        ]
        for path, text in steps:
            if text is None:
                (root / path).unlink()
            else:
                (root / path).write_text(text)
            assert verdicts(inc.files_changed([path])) == verdicts(run_analysis(root)), path
        assert any(i.by == "pragma" and i.finding.rule == first.rule for i in inc.result.ignored)


def test_copy_problems_carried_across_updates_equal_a_full_analysis(tmp_path):
    """What each context's COPY sources lack is kept across updates (CO007, CX003 and the rules that stay
    quiet on a broken context read it): files that come and go, an unrelated file, an ignore file that
    starts excluding a source, then another ignore file with the same patterns that takes over (twice)."""
    root = tmp_path / "repo"
    files = {
        "docker-compose.yml": "services:\n  api:\n    build: {context: ., dockerfile: api/Dockerfile}\n"
        "  api-dev:\n    build: ./api\n"
        "  api-shared:\n    build: {context: ./shared, dockerfile: ../api/Dockerfile}\n",
        "api/Dockerfile": "FROM python:3.12\nCOPY api/app.py /app/\nCOPY requirements.txt /app/\nCOPY . /src\n",
        "api/app.py": "print(1)\n",
        "requirements.txt": "flask\n",
        "shared/api/app.py": "print(2)\n",
        "shared/requirements.txt": "flask\n",
        "shared/.dockerignore": "requirements.txt\n",
    }
    write(root, files)
    steps = [
        ("requirements.txt", None),
        ("requirements.txt", "flask\n"),
        ("notes.txt", "unrelated\n"),
        (".dockerignore", "requirements.txt\n"),
        ("api/Dockerfile.dockerignore", "requirements.txt\n"),
        (".dockerignore", None),
        ("api/requirements.txt", "flask\n"),
        # shared/.dockerignore (the same pattern) takes over: the removed file is outside that context
        ("api/Dockerfile.dockerignore", None),
    ]
    with Incremental(DirTree(root)) as inc:
        assert any(f.rule == "CO007" for f in inc.result.findings)  # api/app.py is not in the api-dev context
        for path, text in steps:
            if text is None:
                (root / path).unlink()
            else:
                (root / path).write_text(text)
            result, full = inc.files_changed([path]), run_analysis(root)
            assert sorted(f.id for f in result.findings) == sorted(f.id for f in full.findings), path
        assert any("excluded by shared/.dockerignore" in f.message for f in inc.result.findings if f.rule == "CO007")


def test_findings_made_before_are_reused_and_let_go(tmp_path):
    """A finding found again is the object made before; findings no tree has any more are let go (here at
    once: no spare), and every update still equals a full analysis."""
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    path = "services/worker/Dockerfile"
    original = (root / path).read_text()
    with Incremental(DirTree(root)) as inc:
        inc.spare_findings = 0
        before = {f.id: f for f in inc.result.findings}
        (root / path).write_text(original + "RUN apt-get update && apt-get install -y gcc\n")
        edited = inc.files_changed([path])
        same(edited, run_analysis(root))
        new = {f.id for f in edited.findings} - set(before)
        assert new  # the edit is found
        (root / path).write_text(original)
        same(inc.files_changed([path]), run_analysis(root))
        kept = [f for f in inc.result.findings if f.id in {e.id for e in edited.findings}]  # found throughout
        assert kept and all(before[f.id] is f for f in kept)  # carried, or found again: the objects made first
        assert not new & {f.id for f in inc._made.values()}  # the edit's findings went with it


def test_secret_file_verdicts_carried_across_updates_equal_a_full_analysis(tmp_path):
    """SE006's verdict per context (is the secret file sent, does a COPY name it) is kept across updates
    while the Dockerfile, the ignore patterns and the secret files there are the same; each step here
    changes one of them, or nothing it reads, and the findings (and their messages) equal a full analysis."""
    root = tmp_path / "repo"
    files = {
        "docker-compose.yml": "services:\n  api:\n    build: ./api\n"
        "  api-root:\n    build: {context: ., dockerfile: api/Dockerfile}\n",
        "api/Dockerfile": "FROM python:3.12\nCOPY app.py /app/\n",
        "api/app.py": "print(1)\n",
        "api/.env": "STRIPE_KEY=1\n",
    }
    write(root, files)
    steps = [
        ("api/Dockerfile", "FROM python:3.12\nCOPY . /app/\n"),  # now COPY puts it in the image
        ("notes.txt", "unrelated\n"),
        ("api/.dockerignore", ".env\n"),  # the api context stops sending it; the root context still does
        ("api/id_rsa", "-----BEGIN KEY-----\n"),
        (".dockerignore", "**/.env\n"),
        ("api/.env", "VITE_API_URL=https://example.com\n"),  # public by design: not a secret any more
        (".dockerignore", None),
        ("api/id_rsa", None),
    ]

    def se006(result) -> list[tuple[str, str]]:
        return sorted((f.id, f.message) for f in result.findings if f.rule == "SE006")

    with Incremental(DirTree(root)) as inc:
        assert se006(inc.result)
        for path, text in steps:
            if text is None:
                (root / path).unlink()
            else:
                (root / path).write_text(text)
            assert se006(inc.files_changed([path])) == se006(run_analysis(root)), path


def test_an_update_leaves_garbage_collection_as_it_found_it(tmp_path):
    """An update runs without cyclic garbage collection (full collections walked every kept path list)
    and turns it back on after; one that finds it off leaves it off."""
    root = tmp_path / "repo"
    (root / "api").mkdir(parents=True)
    (root / "api/Dockerfile").write_text("FROM alpine\nCOPY . .\n")
    with Incremental(DirTree(root)) as inc:
        (root / "api/app.py").write_text("print(1)\n")
        inc.files_changed(["api/app.py"])
        assert gc.isenabled()
        gc.disable()
        try:
            (root / "api/app.py").write_text("print(2)\n")
            inc.files_changed(["api/app.py"])
            assert not gc.isenabled()
        finally:
            gc.enable()


def test_gitignore_patterns_carried_across_updates_equal_a_full_analysis(tmp_path):
    """The .gitignore files (CX004 and the output directories CX001 keeps read them) are found once and
    followed as they come and go, and each one's patterns stand while its text does: every step here
    equals a full analysis."""
    root = tmp_path / "repo"
    files = {
        "docker-compose.yml": "services:\n  api:\n    build: ./api\n",
        "api/Dockerfile": "FROM node:20\nCOPY . .\nRUN npm ci\n",
        "api/package.json": "{}\n",
        "api/dist/bundle.js": "x\n",
        "api/.dockerignore": "node_modules\n",
    }
    write(root, files)
    steps = [
        (".gitignore", ".dockerignore\n"),  # hides the ignore file: CX004
        ("api/.gitignore", "dist/\n"),  # a deeper file: dist/ is a local build output
        ("api/.gitignore", "dist/\n!.dockerignore\n"),
        ("notes.txt", "unrelated\n"),
        (".gitignore", "*.log\n"),
        ("api/.gitignore", None),
    ]

    def found(result) -> list[tuple[str, str]]:
        return sorted((f.id, f.message) for f in result.findings)

    with Incremental(DirTree(root)) as inc:
        for path, text in steps:
            if text is None:
                (root / path).unlink()
            else:
                (root / path).write_text(text)
            assert found(inc.files_changed([path])) == found(run_analysis(root)), path
        assert inc.reran["CX004"] == 1


def test_project_rules_keep_each_unchanged_files_hits_across_updates(tmp_path, small_monorepo):
    """SE002, SE004 and RL002 read every Dockerfile and compose file, so they run after any change to one;
    each file's hits are kept while its parsed object is the same (the hits of the files not edited are
    the very objects found before), and every update still equals a full analysis. BP001's list of built
    services, made from the compose files alone, is the build graph's."""
    root = tmp_path / "repo"
    shutil.copytree(small_monorepo, root)
    with Incremental(DirTree(root)) as inc:
        kept = {name: dict(inc.project.names_memo[name]) for name in ("SE002 dockerfiles", "RL002")}
        edited = sorted(inc.project.dockerfiles)[0]
        assert built_services(inc.project) == build_graph(inc.project).built
        (root / edited).write_text((root / edited).read_text() + "ENV API_TOKEN=s3cr3t\nEXPOSE 9000\n")
        same(inc.files_changed([edited]), run_analysis(root))
        for name, before in kept.items():
            now = inc.project.names_memo[name]
            assert now[edited] is not before[edited]  # made again
            assert all(now[p] is was for p, was in before.items() if p != edited), name  # the others kept
        assert any(h.file == edited and "API_TOKEN" in h.message for h in now_hits(inc, "SE002 dockerfiles"))
        compose = next(c for c in inc.project.composes if c.services)
        (root / compose.path).write_text((root / compose.path).read_text() + "\n# edited\n")
        same(inc.files_changed([compose.path]), run_analysis(root))
        assert built_services(inc.project) == build_graph(inc.project).built


def now_hits(inc: Incremental, name: str) -> list:
    return [h for _, hits in inc.project.names_memo[name].values() for h in hits]


def test_kept_hits_follow_what_each_rule_reads_besides_the_file(tmp_path):
    """The hits kept per file are made again when something else they read changes: SZ005's when a lockfile
    comes into the context (a file added), CO003's and DP001's when the Dockerfile a service builds gains a
    HEALTHCHECK (the compose file itself unchanged). Each step equals a full analysis."""
    root = tmp_path / "repo"
    files = {
        "docker-compose.yml": "services:\n  api:\n    build: ./api\n    depends_on: [db]\n  db:\n    build: ./db\n",
        "api/Dockerfile": "FROM node:20\nWORKDIR /app\nCOPY package*.json ./\nRUN npm install\nCOPY . .\n",
        "api/package.json": "{}\n",
        "db/Dockerfile": "FROM postgres:16\n",
    }
    write(root, files)

    def rules(result, *codes: str) -> list[tuple[str, str]]:
        return sorted((f.rule, f.message) for f in result.findings if f.rule in codes)

    with Incremental(DirTree(root)) as inc:
        assert not rules(inc.result, "SZ005", "CO003", "DP001")
        (root / "api/package-lock.json").write_text("{}\n")
        result = inc.files_changed(["api/package-lock.json"])
        assert rules(result, "SZ005") and rules(result, "SZ005") == rules(run_analysis(root), "SZ005")
        (root / "db/Dockerfile").write_text("FROM postgres:16\nHEALTHCHECK CMD pg_isready\n")
        result = inc.files_changed(["db/Dockerfile"])
        full = run_analysis(root)
        assert rules(result, "CO003") and rules(result, "DP001")
        assert rules(result, "CO003", "DP001", "SZ005") == rules(full, "CO003", "DP001", "SZ005")
        same(result, full)


def test_a_second_context_for_a_dockerfile_moves_its_copy_finding_to_co007(tmp_path):
    """CX003 leaves a Dockerfile built from several contexts to CO007: when a compose file starts building
    the Dockerfile from another directory, the root context's CX003 finding goes, though nothing under the
    root context changed but the compose file (found by the differential test, seed 2)."""
    root = tmp_path / "repo"
    files = {
        "docker-compose.yml": "services:\n  worker:\n    build: {context: ., dockerfile: worker/Dockerfile}\n",
        "worker/Dockerfile": "FROM python:3.12\nCOPY missing.txt /app/\n",
    }
    write(root, files)

    def copy_rules(result) -> list[tuple[str, str]]:
        return sorted((f.rule, f.file) for f in result.findings if f.rule in ("CX003", "CO007"))

    with Incremental(DirTree(root)) as inc:
        assert copy_rules(inc.result) == [("CX003", "worker/Dockerfile")]
        compose = files["docker-compose.yml"] + "  worker-dev:\n    build: ./worker\n"
        (root / "docker-compose.yml").write_text(compose)
        result = inc.files_changed(["docker-compose.yml"])
        assert copy_rules(result) == copy_rules(run_analysis(root))
        assert ("CX003", "worker/Dockerfile") not in copy_rules(result)
        same(result, run_analysis(root))
