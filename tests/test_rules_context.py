"""Context rules (CX001-CX005) and the .dockerignore their fix writes or extends."""

from __future__ import annotations

import pytest

from agent_pipelines.engine.artifacts import Design
from agent_pipelines.engine.domain import AlreadyResolved
from agent_pipelines.pipelines.docker_optimization.analysis import analyze
from agent_pipelines.pipelines.docker_optimization.domain import DockerDomain
from agent_pipelines.pipelines.docker_optimization.rules import context as context_rules
from agent_pipelines.pipelines.docker_optimization.rules.context import HEADER
from agent_pipelines.pipelines.docker_optimization.rules.context_git import gitignored, parse_gitignore
from tests.conftest import make_repo
from tests.rulekit import codes, fixed, write

COMPOSE = "services:\n  app:\n    build: ./app\n"


def test_cx001_triggers_on_a_context_with_tests_and_no_dockerignore(tmp_path):
    files = {"compose.yaml": COMPOSE, "app/Dockerfile": "FROM python:3.12\nCOPY . .\n", "app/tests/t.py": "x\n"}
    assert codes(tmp_path, files, "CX001") == [("app/.dockerignore", 0)]


def test_cx001_is_quiet_with_a_dockerignore_or_one_beside_the_dockerfile(tmp_path):
    files = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": "FROM python:3.12\nCOPY . .\n",
        "app/tests/t.py": "x\n",
        "app/Dockerfile.dockerignore": "tests\n",
    }
    assert codes(tmp_path, files, "CX001") == []


def test_cx001_is_quiet_on_a_small_clean_context(tmp_path):
    files = {"compose.yaml": COMPOSE, "app/Dockerfile": "FROM python:3.12\nCOPY main.py .\n", "app/main.py": "x\n"}
    assert codes(tmp_path, files, "CX001") == []


def test_the_written_dockerignore_excludes_tests_and_gitignored_dirs_but_no_copy_source(tmp_path):
    files = {
        "compose.yaml": COMPOSE,
        ".gitignore": "node_modules/\n",
        "app/Dockerfile": "FROM node:20\nCOPY package.json .\nCOPY docs/api.md docs/\nCOPY . .\n",
        "app/package.json": "{}\n",
        "app/tests/t.js": "x\n",
        "app/docs/api.md": "y\n",
        "app/docs/other.md": "z\n",
    }
    make_repo(tmp_path, files)
    assert fixed(tmp_path, {}, "CX001") == {"app/.dockerignore": HEADER + "**/node_modules\n**/tests\n"}


def test_tests_stay_in_the_context_when_the_build_runs_them(tmp_path):
    files = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": "FROM python:3.12\nCOPY . .\nRUN pytest tests\n",
        "app/tests/t.py": "x\n",
        "app/docs/d.md": "d\n",
    }
    assert fixed(tmp_path, files, "CX001") == {"app/.dockerignore": HEADER + "**/docs\n"}


# -- CX002 COPY . ships what the build doesn't need --------------------------------------------

BROAD = "FROM python:3.12\nWORKDIR /app\nCOPY . .\n"


def test_cx002_triggers_when_the_existing_dockerignore_misses_tests_and_env(tmp_path):
    files = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": BROAD,
        "app/.dockerignore": ".git\n",
        "app/main.py": "x\n",
        "app/tests/test_main.py": "t\n",
        "app/.env": "SECRET=1\n",
    }
    assert codes(tmp_path, files, "CX002") == [("app/.dockerignore", 0)]


def test_cx002_is_quiet_without_a_broad_copy_or_when_everything_is_excluded(tmp_path):
    files = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": "FROM python:3.12\nCOPY main.py .\n",
        "app/.dockerignore": ".git\n",
        "app/main.py": "x\n",
        "app/tests/t.py": "t\n",
    }
    assert codes(tmp_path, files, "CX002") == []
    files = {"app/Dockerfile": BROAD, "app/.dockerignore": "**/tests\n"}
    assert codes(tmp_path, files, "CX002") == []


def test_cx002_respects_what_a_run_uses_and_what_a_reinclude_keeps(tmp_path):
    files = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": BROAD + "RUN pytest tests\n",
        "app/.dockerignore": "docs\n!docs/keep.md\n",
        "app/tests/t.py": "t\n",
        "app/docs/keep.md": "k\n",
    }
    assert codes(tmp_path, files, "CX002") == []


def test_cx002_fires_with_cx001_on_a_missing_dockerignore_and_one_fix_writes_it(tmp_path):
    files = {"compose.yaml": COMPOSE, "app/Dockerfile": BROAD, "app/tests/t.py": "t\n", "app/.env": "A=1\n"}
    assert codes(tmp_path, files, "CX002") == [("app/.dockerignore", 0)]
    assert fixed(tmp_path, {}, "CX002") == {"app/.dockerignore": HEADER + "**/tests\n**/.env\n"}


def test_a_dist_directory_git_keeps_is_source_and_one_it_ignores_is_a_build_output(tmp_path):
    vendored = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": BROAD,
        "app/Program.cs": "x\n",
        "app/wwwroot/lib/jquery/dist/jquery.min.js": "$\n",
    }
    assert codes(tmp_path / "a", vendored, "CX001") == []
    assert codes(tmp_path / "a", vendored, "CX002") == []
    built = dict(vendored, **{".gitignore": "dist/\n", "app/dist/bundle.js": "b\n"})
    found = [f for f in analyze(write(tmp_path / "b", built)) if f.rule == "CX002"]
    assert [f.file for f in found] == ["app/.dockerignore"] and "add **/dist" in found[0].message


def test_cx002_keeps_a_public_only_env_file_the_build_inlines(tmp_path):
    files = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": BROAD,
        "app/.dockerignore": ".git\n",
        "app/.env": "EXPO_PUBLIC_API_PORT=8080\n",
    }
    assert codes(tmp_path / "a", files, "CX002") == []
    files["app/.env"] = "EXPO_PUBLIC_API_PORT=8080\nSENTRY_AUTH_TOKEN=x\n"
    assert codes(tmp_path / "b", files, "CX002") == [("app/.dockerignore", 0)]


def test_fix_appends_the_missing_patterns_and_keeps_the_file(tmp_path):
    files = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": BROAD + "COPY docs/api.md /srv/docs/\n",
        "app/.dockerignore": "# ours\r\n.git",
        "app/main.py": "x\n",
        "app/tests/t.py": "t\n",
        "app/docs/api.md": "a\n",
        "app/node_modules/x/index.js": "n\n",
    }
    assert fixed(tmp_path, files, "CX002") == {
        "app/.dockerignore": (
            "# ours\r\n.git\r\n"
            "# Added by the docker-optimization pipeline: what COPY . shipped and no build step uses.\r\n"
            "**/node_modules\r\n**/tests\r\n"
        )
    }  # not **/docs: COPY docs/api.md needs it
    assert codes(tmp_path, {}, "CX002") == []


# -- CX003 COPY sources the context doesn't have -------------------------------------------------


def test_cx003_triggers_on_a_missing_source_and_one_outside_the_context(tmp_path):
    files = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": "FROM python:3.12\nCOPY main.py .\nCOPY ../shared /shared\nCOPY gone.txt .\n",
        "app/main.py": "x\n",
        "shared/x.py": "y\n",
    }
    assert codes(tmp_path, files, "CX003") == [("app/Dockerfile", 3), ("app/Dockerfile", 4)]


def test_cx003_triggers_on_a_source_the_dockerignore_drops(tmp_path):
    files = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": "FROM python:3.12\nCOPY conf/app.ini .\n",
        "app/conf/app.ini": "x\n",
        "app/.dockerignore": "conf\n",
    }
    assert codes(tmp_path, files, "CX003") == [("app/Dockerfile", 2)]


def test_cx003_reads_quoted_and_escaped_sources_as_buildkit_does(tmp_path):
    files = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": 'FROM python:3.12\nCOPY "app.sln" "app.sln"\nCOPY \'my file.txt\' my\\ notes.md ./\n'
        'COPY "gone.txt" .\n',
        "app/app.sln": "x\n",
        "app/my file.txt": "y\n",
        "app/my notes.md": "z\n",
    }
    assert codes(tmp_path, files, "CX003") == [("app/Dockerfile", 4)]  # only the one truly missing
    found = next(f for f in analyze(tmp_path) if f.rule == "CX003")
    assert found.message.startswith("gone.txt does not exist")  # named without its quotes


def test_cx003_with_a_backtick_escape_keeps_backslashes_in_paths():
    from agent_pipelines.pipelines.docker_optimization.model.copies import sources
    from agent_pipelines.pipelines.docker_optimization.model.dockerfile import Dockerfile

    windows = Dockerfile.parse("app/Dockerfile", '# escape=`\nFROM windows\nCOPY "conf\\app.ini" `"a b`" C:\\app\\\n')
    assert [s.path for s in sources(windows)] == ["conf\\app.ini", '"a', 'b"']  # ` escapes, not \\


def test_cx003_assumes_a_directory_above_for_a_dockerfile_compose_doesnt_build(tmp_path):
    files = {
        "services/api/Dockerfile": "FROM python:3.12\nCOPY libs/common /libs\nCOPY services/api/app.py /app/\n",
        "libs/common/x.py": "x\n",
        "services/api/app.py": "y\n",
    }
    assert codes(tmp_path, files, "CX003") == []
    (tmp_path / "libs/common/x.py").unlink()
    found = [f for f in analyze(tmp_path) if f.rule == "CX003"]
    assert [(f.file, f.line) for f in found] == [("services/api/Dockerfile", 2)]
    assert "context . assumed" in found[0].message


# -- CX004 a .dockerignore git never keeps ----------------------------------------------------------


def test_cx004_triggers_when_gitignore_hides_the_dockerignore(tmp_path):
    files = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": BROAD,
        "app/.dockerignore": "**/tests\n",
        ".gitignore": "# dotfiles are local\n.*\n!.gitignore\n",
    }
    found = [f for f in analyze(write(tmp_path, files)) if f.rule == "CX004"]
    assert [(f.file, f.line, f.evidence) for f in found] == [("app/.dockerignore", 0, ".gitignore:2: .*")]


def test_cx004_is_quiet_when_reincluded_or_when_the_dockerfile_is_ignored_too(tmp_path):
    files = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": BROAD,
        "app/.dockerignore": "**/tests\n",
        ".gitignore": ".*\n!.gitignore\n!.dockerignore\n",
    }
    assert codes(tmp_path, files, "CX004") == []
    assert codes(tmp_path, {".gitignore": "app/\n"}, "CX004") == []


def test_cx004_reads_a_nested_gitignore(tmp_path):
    files = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": BROAD,
        "app/.dockerignore": "**/tests\n",
        "app/.gitignore": "/.dockerignore\n",
    }
    assert codes(tmp_path, files, "CX004") == [("app/.dockerignore", 0)]


@pytest.mark.parametrize(
    "gitignore, path, ignored",
    [
        ("node_modules/\n", "web/node_modules/x.js", True),  # no slash: any depth; trailing /: directories
        ("node_modules/\n", "web/node_modules", False),  # ... so not a file of that name
        ("/build\n", "build/x", True),  # leading /: anchored at the .gitignore
        ("/build\n", "src/build/x", False),
        ("docs/*.md\n", "docs/a.md", True),  # a middle /: anchored too
        ("docs/*.md\n", "x/docs/a.md", False),
        ("**/cache\n", "a/b/cache", True),
        ("a/**/b\n", "a/x/y/b", True),
        ("logs/**\n", "logs/today/x.log", True),
        ("*.log\n!keep.log\n", "keep.log", False),  # last match wins
        ("logs/\n!logs/keep.log\n", "logs/keep.log", True),  # nothing comes back from an ignored directory
        ("\\#notes\n", "#notes", True),
        ("file[0-9].txt\n", "file7.txt", True),
        ("file[!0-9].txt\n", "file7.txt", False),
    ],
)
def test_gitignore_semantics(gitignore, path, ignored):
    rules = parse_gitignore(".gitignore", gitignore)
    assert (gitignored(rules, path) is not None) is ignored


# -- CX005 a large context -------------------------------------------------------------------------


def test_cx005_names_the_biggest_directories_of_a_large_context(tmp_path, monkeypatch):
    monkeypatch.setattr(context_rules, "LARGE_CONTEXT", 1024)
    files = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": "FROM python:3.12\nCOPY main.py .\n",
        "app/main.py": "x\n",
        "app/data/big.bin": "0" * 3000,
        "app/assets/img.txt": "1" * 1000,
        "app/.dockerignore": "cache\n",
        "app/cache/skip.bin": "2" * 9000,
    }
    found = [f for f in analyze(write(tmp_path, files)) if f.rule == "CX005"]
    assert [(f.file, f.line) for f in found] == [("app/.dockerignore", 0)]
    assert found[0].message.endswith(
        "sends 3.9 KiB in 5 files; biggest: data/ 2.9 KiB, assets/ 1.0 KiB, (files at the top) 0.0 KiB"
    )
    assert "cache" not in found[0].message


def test_cx005_is_quiet_on_a_small_context(tmp_path):
    files = {"compose.yaml": COMPOSE, "app/Dockerfile": "FROM python:3.12\nCOPY main.py .\n", "app/main.py": "x\n"}
    assert codes(tmp_path, files, "CX005") == []


# -- a context that cannot build gets its CX003, and no other context finding ----------------------

BROKEN = "FROM node:22\nCOPY shared/lib.js /lib/\nCOPY . .\nRUN npm install\n"  # shared/ is not in app/


def test_a_context_cx003_reports_broken_gets_no_other_context_finding(tmp_path, monkeypatch):
    monkeypatch.setattr(context_rules, "LARGE_CONTEXT", 1024)
    files = {
        "compose.yaml": COMPOSE,
        "app/Dockerfile": BROKEN,
        "app/package.json": "{}\n",
        "app/package-lock.json": "{}\n",
        "app/tests/t.js": "x\n",
        "app/data/big.bin": "0" * 3000,
        ".gitignore": ".dockerignore\n",
    }
    found = sorted((f.rule, f.file, f.line) for f in analyze(write(tmp_path, files)) if f.rule[:2] in ("CX", "SZ"))
    assert found == [("CX003", "app/Dockerfile", 2)]


def test_a_directory_another_dockerfile_builds_from_is_still_judged(tmp_path):
    compose = COMPOSE + "  worker:\n    build: {context: ./app, dockerfile: Dockerfile.worker}\n"
    files = {
        "compose.yaml": compose,
        "app/Dockerfile": BROKEN,
        "app/Dockerfile.worker": "FROM node:22\nCOPY . .\n",
        "app/tests/t.js": "x\n",
    }
    assert codes(tmp_path, files, "CX001") == [("app/.dockerignore", 0)]
    assert codes(tmp_path, files, "CX003") == [("app/Dockerfile", 2)]


def test_the_append_fix_says_already_resolved_once_the_patterns_are_there(tmp_path):
    files = {"compose.yaml": COMPOSE, "app/Dockerfile": BROAD, "app/.dockerignore": ".git\n", "app/tests/t.py": "t\n"}
    write(tmp_path, files)
    domain = DockerDomain()
    plan = domain.plan([f for f in domain.analyze(tmp_path) if f.rule == "CX002"], ["dockerfiles"], False, tmp_path)
    domain.apply(plan.tasks[0], tmp_path, Design())
    with pytest.raises(AlreadyResolved):
        domain.apply(plan.tasks[0], tmp_path, Design())
