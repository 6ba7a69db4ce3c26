"""Smoke test for bench/: the generator makes what its manifest says, and the benchmark runs end to end.

No timing is asserted here: the figures depend on the machine; bench/README.md records them.
"""

from __future__ import annotations

import json
import os

from agent_pipelines.engine.tree import DirTree
from agent_pipelines.pipelines.docker_optimization.model.copies import problems
from agent_pipelines.pipelines.docker_optimization.model.project import Project, is_dockerfile
from bench import analyze_vs_hadolint as bench
from bench.monorepo import counts, ensure, generate

SCALE = 0.02


def on_disk(root) -> set[str]:
    found = set()
    for dirpath, _, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        found |= {name if rel == "." else f"{rel}/{name}".replace(os.sep, "/") for name in filenames}
    return found


def test_generator_makes_what_its_manifest_says(tmp_path):
    man = generate(tmp_path / "repo", SCALE, seed=7)
    files = on_disk(man.root)
    want_files, want_dockerfiles, want_composes = counts(SCALE)

    assert man.files == len(files) == want_files
    assert len(man.dockerfiles) == want_dockerfiles and len(man.composes) == want_composes
    # The Dockerfiles it lists are exactly those the analysis finds, and every compose build points at one.
    assert sorted(p for p in files if is_dockerfile(p)) == man.dockerfiles
    project = Project(DirTree(man.root))
    assert sorted(project.dockerfiles) == man.dockerfiles
    assert not [df.path for df in project.dockerfiles.values() if df.error]
    assert [c.path for c in project.composes] == sorted(man.composes) and not [c for c in project.composes if c.error]
    builds = [b for c in project.composes for b in c.builds]
    assert builds and all(b.dockerfile in man.dockerfiles for b in builds)
    assert {b.context for b in builds} & {"."}, "some service builds with the repository root as its context"
    assert all(p in files for p in man.dockerignores)


def test_generator_is_deterministic(tmp_path):
    a, b = generate(tmp_path / "a", SCALE, seed=3), generate(tmp_path / "b", SCALE, seed=3)
    assert a.dockerfiles == b.dockerfiles and a.bytes == b.bytes
    for rel in a.dockerfiles + a.composes:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_ensure_reuses_an_identical_tree(tmp_path):
    first = ensure(tmp_path, SCALE)
    again = ensure(tmp_path, SCALE)
    assert again.root == first.root and again.seconds == 0.0 and again.files == first.files


def test_measurement_runs_end_to_end(tmp_path, capsys):
    tools = bench.Tools.find()
    result = bench.measure(ensure(tmp_path, SCALE), tools, repeat=1)
    for timing in (result.a, result.b, result.c):
        assert timing.returncode == 0, timing.error
        assert len(timing.runs) == 1
        assert timing.findings is not None, f"{timing.label} printed no JSON"
    assert result.b.cmd[-len(result.manifest.dockerfiles) :] == result.manifest.dockerfiles

    text = bench.render([result], bench.startup(tools, repeat=1), tools, repeat=1)
    assert "goals" in text and "median / (b)" in text and "pipeline --help" in text


def test_main_writes_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert (
        bench.main(
            [
                "--scale",
                str(SCALE),
                "--repeat",
                "1",
                "--warmup",
                "0",
                "--out",
                str(tmp_path / "trees"),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert [s["scale"] for s in data["scales"]] == [SCALE] and set(data["scales"][0]) >= {"a", "b", "c"}


def test_the_generated_compose_files_have_the_shapes_of_real_monorepos(tmp_path):
    man = generate(tmp_path / "repo", 0.35, seed=5)  # large enough for every shape
    assert {shape for shape, files in man.shapes.items() if files} == {
        "prod",
        "override",
        "include",
        "extends",
        "env",
        "outside",
    }
    project = Project(DirTree(man.root))
    assert not project.compose_unresolved, "every ${VAR} context resolves from the root .env or its default"
    owned = {c.path: c.builds for c in project.composes}
    # compose.prod.yaml builds a Dockerfile its stack builds too, from another directory; in some of those
    # contexts COPY sources are missing (already broken), in the stack's they are not.
    broken = []
    for prod in man.shapes["prod"]:
        (build,) = owned[prod]
        contexts = [c for c in project.contexts_of(build.dockerfile) if not c.inferred]
        assert len({c.dir for c in contexts}) >= 2
        broken += [c.dir for c in contexts if problems(c, project.dockerfiles[build.dockerfile])]
    assert broken
    # The override moves a service to another context: its Dockerfile is known under both.
    for override in man.shapes["override"]:
        moved = [b for b in owned[override] if len(project.contexts_of(b.dockerfile)) >= 2]
        assert moved and all(b.file == override for b in moved)
    # Dockerfiles outside their context, the included tool (behind a profile) and the extended one all build.
    built = {c.dockerfile: c for c in project.contexts if not c.inferred}
    assert all(df in built and not built[df].dir.startswith(df.rsplit("/", 1)[0]) for df in man.shapes["outside"])
    tools = {b.service: b for b in owned["infra/compose.yaml"]}
    assert [b.profiles for b in tools.values()] == [("ops",)]
    extended = [b for b in owned[man.shapes["extends"][0]] if b.file == "common/services.yml"]
    assert [b.context.split("/")[0] for b in extended] == ["tools"]


def test_incremental_bench_runs_end_to_end(tmp_path, capsys, monkeypatch):
    """bench/incremental.py on a tiny tree: its kinds of change (each checked against a full analysis), the git
    variant and the cache table (whose outputs it checks are identical)."""
    from bench import incremental

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    incremental.main(["--scale", str(SCALE), "--repeat", "1", "--out", str(tmp_path / "out"), "--cache"])
    out = capsys.readouterr().out
    assert "full analysis" in out
    # a tree this small has no ignore file, so no ".dockerignore" row
    for case in ("Dockerfile", "compose file", "new file", "no cache", "--cache, warm"):
        assert f"| {case}" in out, case
