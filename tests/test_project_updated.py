"""A project updated for the changed paths is the project a fresh load of the same files gives.

``Project.updated`` reuses what no changed path touches: parsed Dockerfiles
and compose files (re-parsed in path order, as a fresh load reads them),
the listings and sent sizes of directories where nothing moved (followed
only where a path changed under them), and the problems and notes of the
other files. After random edits, each compared with a fresh project: the
same files and sorted paths, Dockerfiles and compose files in the same
order, the same notes and problems, contexts, what each one lists and
sends, and its sent size.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_pipelines.engine.tree import DirTree
from agent_pipelines.pipelines.docker_optimization.model import project as project_mod
from agent_pipelines.pipelines.docker_optimization.model.context_size import _Dir, excluded_from, sent_size
from agent_pipelines.pipelines.docker_optimization.model.project import Project, sorted_keys
from tests.rulekit import edit_and_follow, write

FILES = {
    "compose.yaml": (
        "services:\n  api:\n    build: ./api\n  web:\n    build: {context: ., dockerfile: web/Dockerfile}\n"
    ),
    "api/Dockerfile": "FROM python:3.12-slim\nCOPY . .\n",
    "api/app.py": "print(1)\n",
    "api/.dockerignore": "**/__pycache__\n*.md\n",
    "web/Dockerfile": "FROM node:20\nCOPY web/ /app/\n",
    "web/src/index.js": "x\n",
    "web/README.md": "# web\n",
    "tools/Dockerfile": "FROM alpine\n",
    "README.md": "# repo\n",
}
PATHS = [*FILES, "api/new.py", "api/__pycache__/a.pyc", "web/Dockerfile.dev", "docs/notes.md", "z/compose.yaml"]
TEXTS = [
    None,  # removed
    "short\n",
    "FROM alpine AS base\nRUN echo hi\nCOPY missing.txt /\n",
    "services:\n  tools:\n    build: {context: ., dockerfile: tools/Dockerfile}\n",
    "caf\udce9 not utf-8\n",  # written as bytes that are not UTF-8: a note
    "\0binary\n",  # a problem (PX003)
    "node_modules\n*.md\n!README.md\n",
]


def put(root: Path, path: str, text: str | None) -> None:
    target = root / path
    if text is None:
        target.unlink(missing_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(text.encode("utf-8", "surrogateescape"))


def seen(project: Project) -> dict:
    """What a rule can read of a project, compared whole (its contexts first: reading them records problems)."""
    contexts = [
        (c.dir, c.dockerfile, c.services, c.inferred, c.files(), c.sent(), sent_size(c)) for c in project.contexts
    ]
    return {
        "files": project.files,
        "sorted": project.sorted_paths,
        "dockerfiles": [(p, d.text, d.error) for p, d in project.dockerfiles.items()],
        "composes": [(c.path, c.error) for c in project.composes],
        "problems": project.problems,
        "notes": sorted(project.notes),  # in the order files were read (rules ask them in any order)
        "contexts": contexts,
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(TEXTS)), min_size=1, max_size=6))
def test_an_updated_project_equals_a_fresh_one_after_random_edits(edits):
    root = Path(tempfile.mkdtemp(prefix="project-updated-"))
    try:
        write(root, FILES)
        tree = DirTree(root)
        project = Project(tree)
        seen(project)  # its listings and sizes made, so that the updates follow them
        for path, text in edits:
            put(root, path, text)
            tree = tree.updated([path])
            project = project.updated(tree, [path])
            assert seen(project) == seen(Project(DirTree(root))), (path, text)
    finally:
        shutil.rmtree(root)


def test_an_update_leaves_garbage_collection_as_it_found_it(tmp_path):
    """An update runs without cyclic garbage collection (the contexts it makes again set off full collections
    that walked every kept list of paths) and turns it back on after; one that finds it off leaves it off."""
    root = write(tmp_path, FILES)
    tree, project = edit_and_follow(root, DirTree(root), Project(DirTree(root)), "api/app.py", "print(2)\n")
    assert gc.isenabled()
    gc.disable()
    try:
        edit_and_follow(root, tree, project, "api/app.py", "print(3)\n")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_projects_of_the_same_files_share_what_they_parse_and_match(tmp_path):
    """A fresh project of files another project already read reuses its parsed Dockerfiles and what each
    ignore pattern excludes there (a run makes a dozen projects of one commit); a changed file or path
    gets answers of its own, equal to what a project that never shared anything finds."""
    root = write(tmp_path, FILES)
    first = Project(DirTree(root))
    api = next(c for c in first.contexts if c.dir == "api")
    assert excluded_from(api, ("**/__pycache__", "*.md"), api.files()) == {"**/__pycache__": [], "*.md": []}
    again = Project(DirTree(root))
    assert again.dockerfiles["api/Dockerfile"] is first.dockerfiles["api/Dockerfile"]
    assert _Dir.of(again, "api")._by_pattern is _Dir.of(first, "api")._by_pattern

    write(root, {"api/__pycache__/m.pyc": "x", "api/Dockerfile": "FROM python:3.13-slim\nCOPY . .\n"})
    moved = Project(DirTree(root))
    assert moved.dockerfiles["api/Dockerfile"] is not first.dockerfiles["api/Dockerfile"]
    assert moved.dockerfiles["api/Dockerfile"].text.startswith("FROM python:3.13")
    api = next(c for c in moved.contexts if c.dir == "api")
    assert excluded_from(api, ("**/__pycache__",), api.files()) == {"**/__pycache__": ["__pycache__/m.pyc"]}
    assert _Dir.of(moved, "api")._by_pattern is not _Dir.of(first, "api")._by_pattern
    assert "__pycache__/m.pyc" not in str(_Dir.of(first, "api")._by_pattern)  # the first project's stay as they were


def test_sorted_paths_asked_now_and_then_stay_while_hundreds_of_others_come_and_go(tmp_path):
    """The root context's sorted paths (200,000 at scale 10) are not sorted again because hundreds of small
    contexts were asked meanwhile; the root listing comes with the project's own sorted paths."""
    project = Project(DirTree(write(tmp_path, FILES)))
    root = project.files_under(".")
    assert sorted_keys(root) is project.sorted_paths
    api = project.files_under("api")
    assert id(api) in project_mod._SORTED and sorted_keys(api) == sorted(api)  # known when listed, not sorted
    keys = sorted_keys(root)
    small = [{f"dir{n}/file": n} for n in range(600)]  # more than the cache holds
    for n, files in enumerate(small):
        assert sorted_keys(files) == [f"dir{n}/file"]
        if n % 100 == 0:
            assert sorted_keys(root) is keys  # kept, not sorted again
    assert sorted_keys(root) is keys
