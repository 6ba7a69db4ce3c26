"""What a context sends, kept across commits, equals what a fresh project lists.

``Project.updated`` follows each kept listing with the paths that changed
under its directory (an added path is asked of the ignore file alone), and an
ignore file that only gained exclude patterns at its end is answered from
what the old patterns sent. Each step here compares that with a project
loaded afresh from the same files: the same paths and sizes.
"""

from __future__ import annotations

import pytest

from agent_pipelines.engine.tree import DirTree
from agent_pipelines.pipelines.docker_optimization.model import project as project_mod
from agent_pipelines.pipelines.docker_optimization.model.copies import matching, sorted_paths, sources
from agent_pipelines.pipelines.docker_optimization.model.project import Project
from agent_pipelines.pipelines.docker_optimization.ops.measure import context_figures
from tests.rulekit import edit_and_follow, write

FILES = {
    "compose.yaml": (
        "services:\n  api:\n    build: ./api\n  api-root:\n    build: {context: ., dockerfile: api/Dockerfile}\n"
    ),
    "api/Dockerfile": "FROM python:3.12-slim\nCOPY . .\n",
    "api/app.py": "print(1)\n",
    "api/tests/test_app.py": "assert True\n",
    "api/docs/keep.md": "kept\n",
    "api/docs/guide.md": "guide\n",
    "api/node_modules/x/index.js": "x\n",
    "libs/common/util.py": "u = 1\n",
    "README.md": "# repo\n",
}


def sends(project: Project) -> dict[tuple[str, str], dict[str, int]]:
    """Each context's sent files (path -> size)."""
    return {(c.dir, c.dockerfile): c.sent() for c in project.contexts}


step = edit_and_follow


def test_listings_follow_added_removed_and_resized_files(tmp_path):
    root = write(tmp_path, {**FILES, "api/.dockerignore": "docs\n!docs/keep.md\n**/node_modules\n"})
    tree = DirTree(root)
    project = Project(tree)
    sends(project)
    edits = [
        ("api/new.py", "print(2)\n"),  # sent by both contexts, sorted in among the others
        ("api/node_modules/y/index.js", "y\n"),  # under an excluded directory: not sent
        ("api/docs/new.md", "n\n"),  # excluded, beside a re-included file
        ("api/docs/keep.md", "kept, and longer\n"),  # re-included, resized
        ("aaa-first.txt", "sorts before every other path\n"),
        ("api/app.py", None),
        ("README.md", None),
        ("api/new.py", "print(3)\n"),  # the same size: nothing to follow
    ]
    for path, text in edits:
        tree, project = step(root, tree, project, path, text)
        fresh = Project(DirTree(root))
        assert sends(project) == sends(fresh), path
        assert project.files_under(".") == fresh.files_under(".")
        assert project.files_under("api") == fresh.files_under("api")


@pytest.mark.parametrize(
    "before, appended",
    [
        ("", "**/node_modules\n**/tests\n"),  # a new ignore file: appended to no patterns
        ("node_modules\n", "**/docs\n*.py\n"),
        ("docs\n!docs/keep.md\n", "docs\n"),  # "docs" is not tried on the directory: keep.md stays sent
        ("docs\n!docs/keep.md\n", "**/*.md\n"),  # ... but a pattern naming the file itself excludes it
        ("**/*.md\n!docs/keep.md\n", "tests/test_app.py\n"),
    ],
)
def test_appended_exclude_patterns_are_answered_from_what_was_sent(tmp_path, before, appended):
    files = {**FILES}
    if before:
        files["api/.dockerignore"] = before
    root = write(tmp_path, files)
    tree = DirTree(root)
    project = Project(tree)
    sends(project)
    tree, project = step(root, tree, project, "api/.dockerignore", before + appended)
    (api,) = [c for c in project.contexts if c.dir == "api"]
    derived = project.appended_sent("api", api.ignore)
    fresh = Project(DirTree(root))
    assert derived is not None
    assert derived == next(c for c in fresh.contexts if c.dir == "api").sent()
    assert sends(project) == sends(fresh)


def test_a_reinclusion_or_an_edited_pattern_is_not_derived(tmp_path):
    root = write(tmp_path, {**FILES, "api/.dockerignore": "docs\n"})
    tree = DirTree(root)
    project = Project(tree)
    sends(project)
    for text in ("docs\n!docs/keep.md\n", "tests\n"):
        tree, project = step(root, tree, project, "api/.dockerignore", text)
        (api,) = [c for c in project.contexts if c.dir == "api"]
        assert project.appended_sent("api", api.ignore) is None, text
        assert sends(project) == sends(Project(DirTree(root)))
        sends(project)


def test_listings_not_asked_for_several_commits_apply_every_change_since(tmp_path):
    """A listing followed across commits nobody asked it in is made once, from the last one made: a path
    added then removed, removed then added back, or resized twice ends as a fresh project lists it."""
    root = write(tmp_path, {**FILES, "api/.dockerignore": "**/node_modules\n"})
    tree = DirTree(root)
    project = Project(tree)
    first = project
    sends(first)
    for path, text in [
        ("api/tmp.py", "t\n"),
        ("api/app.py", None),
        ("api/tmp.py", None),
        ("api/app.py", "print('back, and longer')\n"),
        ("api/node_modules/z.js", "z\n"),
        ("libs/common/util.py", "u = 22\n"),
        ("libs/common/util.py", "u = 333\n"),
    ]:
        tree, project = step(root, tree, project, path, text)
    assert sends(project) == sends(Project(DirTree(root)))
    assert "app.py" in next(c for c in first.contexts if c.dir == "api").sent()  # the first project's stays


def test_sorted_paths_and_ops_figures_follow_the_listings(tmp_path):
    """A followed listing's paths come sorted from the listing it followed (not sorted again: 200,000 for a
    root context at scale 10), and COPY sources matched on them give ops the figures a fresh project gives:
    `COPY . .` (every file sent), a directory, a file and a glob."""
    files = {
        **FILES,
        "compose.yaml": FILES["compose.yaml"] + "  tools:\n    build: {context: ., dockerfile: tools/Dockerfile}\n",
        "tools/Dockerfile": "FROM alpine\nCOPY api/app.py api/docs/ /app/\nCOPY *.md /\n",
    }
    root = write(tmp_path, files)
    tree = DirTree(root)
    project = Project(tree)
    for c in project.contexts:
        sorted_paths(c.sent())
    edits = [
        ("api/docs/new.md", "n\n"),
        ("CHANGES.md", "sorts among the others\n"),
        ("api/app.py", "print(1, 2)\n"),  # resized
        ("README.md", None),
        ("api/docs/guide.md", None),
        ("0-first.txt", "x\n"),
    ]
    for path, text in edits:
        tree, project = step(root, tree, project, path, text)
        fresh = Project(DirTree(root))
        for c in project.contexts:
            sent = c.sent()
            assert id(sent) in project_mod._SORTED, (path, c.dir)  # derived when the listing was made
            assert sorted_paths(sent) == sorted(sent)
        figures = context_figures(project)
        assert figures == context_figures(fresh), path
        assert {d: (f["buildkit_files"], f["buildkit_bytes"]) for d, f in figures.items()} == figures_by_hand(fresh)


def figures_by_hand(project: Project) -> dict[str, tuple[int, int]]:
    """Per context directory: the most files and bytes a Dockerfile built there names, each COPY source matched."""
    out: dict[str, tuple[int, int]] = {}
    for c in project.contexts:
        sent = c.sent()
        named = {p for src in sources(project.dockerfiles[c.dockerfile]) for p in matching(sent, src.path)}
        files, size = out.get(c.dir, (0, 0))
        out[c.dir] = (max(files, len(named)), max(size, sum(sent[p] for p in named)))
    return out
