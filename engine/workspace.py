"""The git-backed workspace: a worktree on branch ``pipeline/<run-id>``.

The run never writes to the user's checkout, index or current branch: all
edits happen in a separate worktree kept under the repository's git dir
(``<git-common-dir>/pipeline-worktrees/<run-id>``), so nothing appears in
``git status`` of the user's tree. Commits carry trailers that name the run,
phase and task; they are what makes re-running a phase idempotent.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import git

from agent_pipelines.engine.edits import Staged
from agent_pipelines.engine.gitenv import GIT_ENV as _GIT_ENV
from agent_pipelines.engine.gitenv import git_env
from agent_pipelines.engine.tree import OBJECT_ID, DirTree, changed_paths, keep, remember_changed

if TYPE_CHECKING:
    from gitdb import LooseObjectDB

TRAILER_RUN = "Pipeline-Run"
TRAILER_PHASE = "Pipeline-Phase"
TRAILER_TASK = "Pipeline-Task"
TRAILER_FINDINGS = "Pipeline-Findings"


class RepoError(Exception):
    """The target can't be used as a repository; the message says what to do."""


def validate_repo(path: Path) -> Path:
    """The work tree root of ``path``, or RepoError with a one-line remedy."""
    path = Path(path).expanduser()
    if not path.exists():
        raise RepoError(f"{path} does not exist; pass --repo with the path of a git checkout")
    if not path.is_dir():
        raise RepoError(f"{path} is not a directory; pass --repo with the path of a git checkout")
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except git.InvalidGitRepositoryError:
        raise RepoError(
            f"{path} is not a git repository; run `git init && git add -A && git commit -m init` there first"
        ) from None
    except git.NoSuchPathError:
        raise RepoError(f"{path} does not exist; pass --repo with the path of a git checkout") from None
    try:
        if repo.bare:
            raise RepoError(
                f"{path} is a bare repository; clone it (`git clone {path} work`) and pass the clone with --repo"
            )
        try:
            _ = repo.head.commit  # raises ValueError on a repository without commits
        except ValueError:
            raise RepoError(
                f"{path} has no commits yet; commit your files first (`git add -A && git commit -m init`)"
            ) from None
        if "pipeline" in {h.name for h in repo.heads}:
            raise RepoError(
                f"{path} has a branch named `pipeline`, which leaves no room for the run branches "
                f"pipeline/<run-id>; rename it (`git branch -m pipeline pipeline-branch`) and retry"
            )
        assert repo.working_tree_dir is not None  # not bare (refused above)
        return Path(repo.working_tree_dir).resolve()
    finally:
        repo.close()


def git_common_dir(repo: Path) -> Path:
    out = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--path-format=absolute", "--git-common-dir"],
        check=True,
        capture_output=True,
        text=True,
        env=git_env(),
    ).stdout.strip()
    return Path(out)


def _branch_exists(repo: Path, branch: str) -> bool:
    return (
        subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            capture_output=True,
            env=git_env(),
        ).returncode
        == 0
    )


# The run's worktree gets a split index (git's own format since 2.1): every commit rewrites the index twice
# (`git add`, then the reviewer's move), and a 20,000-file index is 2.4 MB to hash and write each time; split,
# a write is the few entries changed since the shared part (about half the CPU of add and write-tree,
# measured on the scale-1 bench). Only that worktree's index: git keeps an index's format when
# core.splitIndex is unset, and the user's own checkout and configuration are not touched.
SPLIT_INDEX = ("-c", "core.splitIndex=true")


def _add_worktree_on_new_branch(repo: Path, worktree: Path, branch: str, base: str) -> None:
    added = subprocess.run(
        ["git", "-C", str(repo), *SPLIT_INDEX, "worktree", "add", "--quiet", "-b", branch, str(worktree), base],
        capture_output=True,
        text=True,
        env=git_env(),
    )
    if added.returncode != 0:
        reason = (added.stderr.strip().splitlines() or ["git worktree add failed"])[-1]
        raise RepoError(f"could not create the run's worktree {worktree} on branch {branch}: {reason}")


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def registered_worktrees(repo: Path) -> dict[Path, dict[str, str]]:
    """The worktrees git knows for ``repo``: resolved path -> its porcelain attributes (branch, locked...)."""
    out = subprocess.run(
        ["git", "-C", str(repo), "worktree", "list", "--porcelain", "-z"],
        check=True,
        capture_output=True,
        env=git_env(),
    ).stdout.decode("utf-8", "surrogateescape")
    found: dict[Path, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for field in out.split("\0"):
        if not field:
            current = None
            continue
        key, _, value = field.partition(" ")
        if key == "worktree":
            current = found.setdefault(Path(value).resolve(), {})
        elif current is not None:
            current[key] = value
    return found


def verify_own_worktree(repo: Path, run_id: str, worktree: Path | str, branch: str) -> Path:
    """Prove that ``worktree`` is run ``run_id``'s own worktree before anything resets or merges it.

    What: the path must be ``<git-common-dir>/pipeline-worktrees/<run-id>`` of ``repo`` (no symlink on the
    way), on branch ``pipeline/<run-id>``, and, when it exists, registered with git (``git worktree list``).
    Why: run.json is a file in a reports directory, not a proof; a record whose ``worktree`` names the
    user's checkout once made ``rollback`` run ``reset --hard`` and ``clean -ffdx`` there. Example: a record
    with ``"worktree": "/home/me/project"`` is refused with one line. Instead: resume, roll back or apply
    with the run's untouched run.json, or start a new run. Returns the repository's work tree root.
    """
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise RepoError(
            f"the run record's run id {run_id!r} is not a run id; the record was altered, so nothing was touched"
        )
    root = validate_repo(Path(repo))
    location, own_branch = Workspace.location(root, run_id)
    refuse = f"the run record of {run_id} names"
    if branch != own_branch:
        raise RepoError(f"{refuse} branch {branch!r}, not its own {own_branch}; nothing was touched")
    given = Path(worktree)
    if not given.is_absolute() or given.resolve() != location.resolve():
        raise RepoError(f"{refuse} worktree {str(worktree)!r}, not its own {location}; nothing was touched")
    for part in (location.parent, location):
        if part.is_symlink():
            raise RepoError(f"{part} is a symbolic link, not the run's own worktree; nothing was touched")
    if location.exists():
        entry = registered_worktrees(root).get(location.resolve())
        if entry is None:
            if any(location.iterdir()):
                raise RepoError(f"{location} is not a worktree git knows (`git worktree list`); nothing was touched")
        elif (
            entry.get("branch", f"refs/heads/{own_branch}") != f"refs/heads/{own_branch}"
            and entry.get("locked") != "initializing"
        ):  # half-made: repaired by ``repair_worktree``
            raise RepoError(
                f"{location} is on {entry['branch']}, not the run's branch {own_branch}; nothing was touched"
            )
    return root


def repair_worktree(repo: Path, worktree: Path) -> None:
    """Undo what a run killed during ``git worktree add`` left: a worktree locked "initializing", or half-made.

    Only for a path ``verify_own_worktree`` accepted (the run's own, under the git dir). The lock git took
    while making it is released; a directory there without a ``.git`` file, or whose HEAD does not resolve,
    is removed, so that ``Workspace.open`` makes the worktree again from the branch (the commits are safe
    on the branch; the worktree holds nothing else of value).
    """
    entry = registered_worktrees(repo).get(Path(worktree).resolve())
    if entry is not None and entry.get("locked") == "initializing":
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "unlock", str(worktree)], capture_output=True, env=git_env()
        )
    if not worktree.is_dir():
        return

    def _rev_parse(*args: str) -> str | None:
        done = subprocess.run(
            ["git", "-C", str(worktree), "rev-parse", *args], capture_output=True, text=True, env=git_env()
        )
        return done.stdout.strip() if done.returncode == 0 else None

    # A broken .git file lets git find the repository's own git dir above (the worktree lives inside it):
    # the worktree must be its own top level, at a HEAD that resolves.
    top = _rev_parse("--show-toplevel") if (worktree / ".git").exists() else None
    if top is None or Path(top).resolve() != worktree.resolve() or _rev_parse("--verify", "--quiet", "HEAD") is None:
        shutil.rmtree(worktree)


def _stripspace(text: str) -> str:
    """A commit message as ``git commit -F`` stores it (``--cleanup=whitespace``): trailing blanks of each line
    dropped, runs of empty lines made one, none at the start or the end, a final newline."""
    lines: list[str] = []
    gap = False
    for line in text.split("\n"):
        line = line.rstrip(" \t\r")
        if not line:
            gap = bool(lines)
            continue
        if gap:
            lines.append("")
        gap = False
        lines.append(line)
    return "\n".join(lines) + "\n" if lines else ""


# What this process knows of its checkouts, by resolved worktree path. Each agent opens its own Workspace;
# without this, each one's first ``reset_to`` ran `git reset --hard` and `git clean -ffdx` (a stat of every
# file and a walk of every directory: 20,000 on a large monorepo) on a checkout nothing had touched.
# ``_KNOWN_CLEAN``: the checkout holds exactly the commit (nothing untracked, nothing edited), as the
# (branch, HEAD, index file's identity) it was left at. Trusted only in this process and only while HEAD and
# the index are as they were: a crash ends the process (a new one knows nothing), a git command run by anyone
# moves HEAD or rewrites the index, and every write of ours drops the entry first (``writing``, a move, a
# pick). A file written without git by code that does not announce it is not seen, as within one Workspace.
_KNOWN_CLEAN: dict[str, tuple[str | None, str, tuple[int, int, int] | None]] = {}
# ``_JUST_MADE``: worktrees ``Workspace.create`` made in this process, not yet opened: ``open`` scrubs them not.
_JUST_MADE: set[str] = set()
# ``_LISTED``: the last listing of a clean checkout, (commit, tree), shared by the workspaces of one process.
_LISTED: dict[str, tuple[str, DirTree]] = {}
# The parent of each commit this process made (what an object id names never changes).
_PARENTS: dict[str, str] = {}
# ``numstat`` of the commits this process made, measured when they were staged (``Workspace.stage``).
_NUMSTATS: dict[str, tuple[list[str], int, int]] = {}
# ``_BEHIND``: index entries of a checkout that lag behind its HEAD, path -> (mode, blob id), by resolved worktree
# path. A commit of exactly what a fix wrote is made from git objects (``Workspace._stage_objects``), without
# reading or writing the index: `git add`, `git diff --cached` and `git write-tree` each read all of it (25 MB
# on a 200,000-file monorepo: 0.15 s per commit together). The entries are written into the index
# (``Workspace._sync_index``) before a git command that reads it, and when the workspace closes.
_BEHIND: dict[str, dict[str, tuple[str, str]]] = {}
_ROOTS: dict[str, str] = {}  # the root tree of commits (what an object id names never changes)
_TREE_MODE, _GITLINK_MODE = 0o40000, 0o160000


def _numstat_of(fields: list[str]) -> tuple[list[str], int, int]:
    """(files, lines added, lines removed) from `git diff --numstat -z` records (binary files count 0)."""
    files, ins, dels = [], 0, 0
    it = iter(fields)
    for field in it:
        parts = field.split("\t", 2)
        if len(parts) != 3:
            continue
        a, d, name = parts
        if not name:  # a rename: "a\td\t\0old\0new"
            next(it, "")
            name = next(it, "")
        files.append(name)
        ins += int(a) if a.isdigit() else 0
        dels += int(d) if d.isdigit() else 0
    return files, ins, dels


# What each commit this process made changed, as `git diff --raw --no-renames <parent> <commit>` says it.
_Raw = tuple[str, str, str, str, str, str]  # old mode, new mode, old blob, new blob, status, path
_Staged = tuple[str, str, str, str, str, str, str]  # the same with a rename's or copy's second path
_RAW: dict[str, tuple[str, list[_Raw]]] = {}
_ZERO = "0" * 40


def _remember_raw(parent: str, sha: str, staged: list[_Staged]) -> None:
    """Keep what ``stage`` saw (`git diff --cached --raw -M`) as the commit's raw diff: a rename becomes its
    deletion and its addition (as ``--no-renames`` names them); a copy is not kept (the move asks git)."""
    raw = []
    for old_mode, new_mode, old_blob, new_blob, status, first, second in staged:
        if status.startswith("C") or len(old_blob) != len(_ZERO):
            return
        if status.startswith("R"):
            raw.append((old_mode, "000000", old_blob, _ZERO, "D", first))
            raw.append(("000000", new_mode, _ZERO, new_blob, "A", second))
        else:
            raw.append((old_mode, new_mode, old_blob, new_blob, status, first))
    keep(_RAW, sha, (parent, sorted(raw, key=lambda r: r[5].encode("utf-8", "surrogateescape"))))


def _known_raw(head: str, sha: str) -> list[_Raw] | None:
    """`git diff --raw --no-renames head sha` when one of them is a commit made here on the other, else None."""
    known = _RAW.get(sha)
    if known is not None and known[0] == head:
        return known[1]
    known = _RAW.get(head)
    if known is not None and known[0] == sha:  # back to the parent: each change undone
        undo = {"A": "D", "D": "A", "M": "M"}
        return [(new, old, b, a, undo.get(status, "T"), path) for old, new, a, b, status, path in known[1]]
    return None


@dataclass(frozen=True)
class TaskCommit:
    sha: str
    phase: str
    task: str


class Workspace:
    """A handle on the run's worktree; a context manager that closes its Repo."""

    def __init__(self, worktree: Path, branch: str) -> None:
        self.path = Path(worktree)
        self.branch = branch
        self.repo = git.Repo(self.path)
        self.repo.git.update_environment(**_GIT_ENV)
        self._key = str(self.path.resolve())  # the checkout's entry in ``_KNOWN_CLEAN`` and ``_LISTED``
        self._gitdir = Path(self.repo.git_dir)  # the worktree's own (HEAD, index)
        self._common = Path(self.repo.common_dir)  # the repository's (branches)
        self._ignored: tuple[list[str], list[str]] | None = None  # the last ``ignored`` question and answer
        self._plain: bool | None = None  # checkouts write blobs as they are (see ``_plain_checkouts``)
        self._said: dict[str, str] | None = None  # the configuration asked once (``_config``)
        self._was_clean = False  # ``_clean`` before the writes ``writing`` announced
        self._exact = False  # the last ``stage`` staged exactly the files written (``only``)
        self._staged_numstat: tuple[list[str], int, int] | None = None  # the last ``stage``'s numstat
        self._staged_raw: list[_Staged] | None = None  # and its `git diff --raw` records
        self._staged_tree: tuple[str, str, dict[str, tuple[str, str]]] | None = None  # (HEAD, tree, entries)
        self._loose: LooseObjectDB | None = None  # where ``_store`` writes objects

    # -- lifecycle -------------------------------------------------------
    @staticmethod
    def location(repo: Path, run_id: str) -> tuple[Path, str]:
        """Where a run's worktree goes and its branch's name (known before either exists)."""
        return git_common_dir(repo) / "pipeline-worktrees" / run_id, f"pipeline/{run_id}"

    @classmethod
    def create(cls, repo: Path, run_id: str, base: str) -> Workspace:
        worktree, branch = cls.location(repo, run_id)
        if _branch_exists(repo, branch):
            raise RepoError(
                f"{repo} already has a branch {branch}; another run made it, or it is yours: "
                f"rename or delete it (`git branch -m {branch} {branch}-old`) and retry"
            )
        _add_worktree_on_new_branch(repo, worktree, branch, base)
        ws = cls(worktree, branch)
        ws._set_clean(True)  # `git worktree add` just checked the base out: no scrub, no reset needed
        _JUST_MADE.add(ws._key)
        return ws

    @classmethod
    def open(cls, repo: Path, worktree: Path, branch: str, base: str | None = None) -> Workspace:
        """Reopen a run's worktree, recreating it from the branch if it was removed.

        ``base``: the run committed nothing yet, so a missing branch is one the
        run never got to make (it was killed first): make it now, at ``base``.
        """
        worktree = Path(worktree)
        fresh = str(worktree.resolve())
        if fresh in _JUST_MADE and (worktree / ".git").is_file():
            _JUST_MADE.discard(fresh)  # once: a later invocation in this process (a server's) scrubs again
            ws = cls(worktree, branch)
            if ws._clean and _KNOWN_CLEAN[ws._key][0] == branch:  # made by `git worktree add`, untouched since
                return ws
            ws.close()
        repair_worktree(repo, worktree)
        if base is not None and not (worktree / ".git").exists() and not _branch_exists(repo, branch):
            subprocess.run(
                ["git", "-C", str(repo), "worktree", "prune"], check=True, capture_output=True, env=git_env()
            )
            _add_worktree_on_new_branch(repo, worktree, branch, base)
        if not (worktree / ".git").exists():
            subprocess.run(
                ["git", "-C", str(repo), "worktree", "prune"], check=True, capture_output=True, env=git_env()
            )
            added = subprocess.run(
                ["git", "-C", str(repo), *SPLIT_INDEX, "worktree", "add", "--quiet", str(worktree), branch],
                capture_output=True,
                text=True,
                env=git_env(),
            )
            if added.returncode != 0:
                if not _branch_exists(repo, branch):
                    raise RepoError(
                        f"the run's branch {branch} no longer exists in {repo}, so the run can't "
                        f"continue; start a new run"
                    )
                reason = (added.stderr.strip().splitlines() or ["git worktree add failed"])[-1]
                raise RepoError(f"could not recreate the run's worktree {worktree} from {branch}: {reason}")
        ws = cls(worktree, branch)
        ws.scrub()
        return ws

    def close(self) -> None:
        self._sync_index(check=False)  # the index on disk says what HEAD says whenever no workspace is open
        self.repo.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state -----------------------------------------------------------
    def scrub(self) -> None:
        """Drop anything a crashed node left half-done: an interrupted rebase or pick, uncommitted edits."""
        gitdir = Path(self.repo.git.rev_parse("--absolute-git-dir"))
        common = Path(self.repo.git.rev_parse("--path-format=absolute", "--git-common-dir"))
        # A run killed in the middle of a git command leaves git's lock files behind, and every later git
        # command in the worktree fails on them. This worktree and branch are the run's own, and the caller
        # holds the repository lock: no git process of ours is running here, so they are stale.
        for stale in (gitdir / "index.lock", gitdir / "HEAD.lock", common / "refs" / "heads" / f"{self.branch}.lock"):
            stale.unlink(missing_ok=True)
        if (gitdir / "rebase-merge").exists() or (gitdir / "rebase-apply").exists():
            self.repo.git.rebase("--abort")
        if (gitdir / "CHERRY_PICK_HEAD").exists():
            self.repo.git.cherry_pick("--abort")
        if self.repo.head.is_detached or self.repo.active_branch.name != self.branch:
            self.repo.git.checkout("--quiet", self.branch)
        self._set_clean(False)
        _BEHIND.pop(self._key, None)  # `reset --hard` writes every index entry from HEAD
        self.repo.git.reset("--hard", "--quiet")
        self.repo.git.clean("-ffdxq")
        self._set_clean(True)

    @property
    def _clean(self) -> bool:
        """Nothing untracked or edited in the checkout: a move needs no `git clean` (a tree walk)."""
        known = _KNOWN_CLEAN.get(self._key)
        if known is None:
            return False
        if known != self._state():  # HEAD moved or the index was rewritten by something else
            _KNOWN_CLEAN.pop(self._key, None)
            return False
        return True

    def _set_clean(self, clean: bool) -> None:
        """Record the checkout as clean at its present HEAD and index, or forget that (before any write)."""
        if clean:
            _KNOWN_CLEAN[self._key] = self._state()
        else:
            _KNOWN_CLEAN.pop(self._key, None)

    def _state(self) -> tuple[str | None, str, tuple[int, int, int] | None]:
        """(branch or None, HEAD commit, the index file's inode, size and mtime), read without a git process.

        Git writes the index to a lock file it renames, so any command that rewrites it changes this."""
        try:
            index = os.stat(self._gitdir / "index")
            stamp: tuple[int, int, int] | None = (index.st_ino, index.st_size, index.st_mtime_ns)
        except OSError:
            stamp = None
        return (*self._ref_state(), stamp)

    def _ref_state(self) -> tuple[str | None, str]:
        """(branch or None when detached, HEAD's commit or ""), from the ref files: no git process, one or two
        small reads (asked several times per commit). A packed or symbolic branch is left to GitPython."""
        try:
            said = (self._gitdir / "HEAD").read_text(encoding="utf-8", errors="surrogateescape").strip()
        except OSError:
            said = ""
        if OBJECT_ID.fullmatch(said):
            return None, said
        if said.startswith("ref: refs/heads/"):
            branch = said.removeprefix("ref: refs/heads/")
            try:
                sha = (self._common / "refs" / "heads" / branch).read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError):
                sha = ""
            if OBJECT_ID.fullmatch(sha):
                return branch, sha
        head = self.repo.head
        try:
            return (
                None if head.is_detached else head.ref.path.removeprefix("refs/heads/"),
                git.SymbolicReference.dereference_recursive(self.repo, "HEAD"),
            )
        except (ValueError, TypeError):
            return None, ""

    def head(self) -> str:
        sha = self._ref_state()[1]
        return sha or self.repo.git.rev_parse("HEAD")

    def tree(self) -> DirTree:
        """The checkout as a tree, for a clean worktree at HEAD (after ``reset_to`` or ``commit``).

        The first call walks the directory; later ones update the list for the
        paths git says changed since (``git diff --name-only``), so a run that
        makes a hundred commits on a 20,000-file repository walks it once.
        """
        head = self.head()
        listed = _LISTED.get(self._key)
        if listed is not None and listed[0] == head:
            return listed[1]
        if listed is None:
            tree = DirTree(self.path)
            tree.files()
        else:
            tree = listed[1].updated(changed_paths(self.path, listed[0], head))
        tree.commit = head
        _LISTED[self._key] = (head, tree)
        return tree

    def reset_to(self, sha: str) -> None:
        """Check out ``sha`` on the branch, discarding every edit; `git clean` only when something may be left."""
        self._staged_tree = None
        if self._clean and self._move(sha):
            return
        if self._clean:
            self._sync_index()  # a two-tree checkout takes an index entry that lags behind HEAD for an edit
            self._set_clean(False)  # until git is done: an interrupted checkout leaves files half-written
            try:  # a two-tree checkout touches only the paths that differ (a reset re-checks every file)
                self.repo.git.checkout("--quiet", "-B", self.branch, sha)
                self._set_clean(True)
                return
            except git.GitCommandError:
                pass  # something untracked is in the way: the thorough way below
        self._set_clean(False)
        _BEHIND.pop(self._key, None)  # `reset --hard` writes every index entry from ``sha``
        self.repo.git.reset("--hard", "--quiet", sha)
        self.repo.git.clean("-ffdxq")
        self._set_clean(True)

    def _move(self, sha: str) -> bool:
        """Move a clean checkout to ``sha`` by writing only the files that differ; False: not done, use git.

        Why: ``git checkout`` re-checks the whole index against the checkout (a stat of every file: 20,000
        on a large monorepo), though the reviewer moves one small commit at a time. Here: one ``git diff
        --raw`` between the commits, the changed blobs through one ``git cat-file --batch``, the index
        entries set from the commit (``update-index --index-info``: the same blob ids git would record)
        and the branch moved. Only for plain files: a path git would convert on checkout (attributes, eol
        settings), a submodule or a type change is left to ``git checkout``.
        """
        branch, head = self._ref_state()
        if not self._plain_checkouts() or branch != self.branch or not head:
            return False
        if head == sha:
            return True
        raw = _known_raw(head, sha)  # a commit made here, or its parent: no `git diff`
        if raw is None:
            out = subprocess.run(
                ["git", "-C", str(self.path), "diff", "--raw", "-z", "--no-renames", "--no-abbrev", head, sha],
                capture_output=True,
                env=git_env(),
            )
            fields = out.stdout.decode("utf-8", "surrogateescape").split("\0")
            if out.returncode != 0:
                return False
            raw = []
            for meta, path in zip(fields[0::2], fields[1::2]):
                old_mode, new_mode, old_blob, new_blob, status = meta[1:].split(" ", 4)
                raw.append((old_mode, new_mode, old_blob, new_blob, status, path))
        if len(raw) > 200:
            return False
        moves = []  # (path, new mode, new blob id)
        for old_mode, new_mode, _old, blob, status, path in raw:
            if (
                {old_mode, new_mode} - {"000000", "100644", "100755", "120000"}
                or status not in ("A", "M", "D")
                or posixpath.basename(path) == ".gitattributes"
            ):
                return False
            moves.append((path, new_mode, blob))
        if not moves:
            return False
        if self._attributes([p for p, _, _ in moves]):
            return False
        self._set_clean(False)  # until the move is done: an interruption leaves files half-written
        try:
            blobs = {p: self._read(blob) for p, mode, blob in moves if mode != "000000"}
            for path, mode, _blob in sorted(moves, key=lambda m: m[1] != "000000"):  # removals first
                target = self.path / path
                if target.is_symlink() or target.exists():
                    target.unlink()
                if mode == "000000":
                    for parent in target.parents:  # git drops the directories a removal leaves empty
                        if parent == self.path:
                            break
                        try:
                            parent.rmdir()
                        except OSError:
                            break
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if mode == "120000":
                    os.symlink(blobs[path].decode("utf-8", "surrogateescape"), target)
                    continue
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o777 if mode == "100755" else 0o666)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(blobs[path])
        except (OSError, ValueError):  # gitdb's BadObject is a ValueError
            return False  # half-written, and not known clean: the thorough reset repairs it
        entries = "".join(f"{mode if mode != '000000' else '0'} {blob}\t{path}\0" for path, mode, blob in moves)
        self._sync_index(then=entries)  # the entries lagging behind HEAD first: the move's come after, and win
        subprocess.run(
            [
                "git",
                "-C",
                str(self.path),
                "update-ref",
                "-m",
                f"reset: moving to {sha}",
                f"refs/heads/{self.branch}",
                sha,
                head,
            ],
            check=True,
            capture_output=True,
            env=git_env(),
        )
        self._set_clean(True)
        return True

    def _config(self) -> dict[str, str]:
        """The configuration this workspace's shortcuts depend on (lower case). Asked once."""
        if self._said is None:
            out = subprocess.run(
                [
                    "git",
                    "-C",
                    str(self.path),
                    "config",
                    "--get-regexp",
                    r"^(core\.(autocrlf|eol|symlinks|filemode|sparsecheckout|ignorecase)|extensions\.objectformat|diff\.renames)$",
                ],
                capture_output=True,
                text=True,
                env=git_env(),
            ).stdout.lower()
            # A key given without a value ("[core] sparseCheckout") is a boolean that is true.
            self._said = dict(line.partition(" ")[::2] if " " in line else (line, "true") for line in out.splitlines())
        return self._said

    def _flag(self, key: str, default: bool) -> bool | None:
        """A boolean setting as git reads it (true/yes/on/1, false/no/off/0); None: any other value."""
        value = self._config().get(key)
        if value is None:
            return default
        return True if value in ("true", "yes", "on", "1") else False if value in ("false", "no", "off", "0") else None

    def _renames_by_default(self) -> bool:
        """Does `git show` detect renames as ``-M`` does (``diff.renames`` unset or true, not copies or off)?"""
        return self._flag("diff.renames", True) is True

    def _plain_checkouts(self) -> bool:
        """Does git write a blob as it is (no end-of-line conversion configured)? Asked once."""
        if self._plain is None:
            said = self._config()
            self._plain = (
                said.get("core.autocrlf", "false") not in ("true", "input")
                and said.get("core.eol", "lf") != "crlf"
                and said.get("core.symlinks", "true") != "false"
            )
        return self._plain

    def writing(self) -> None:
        """Say that files are about to be written outside git (a fix): the next ``reset_to`` cleans."""
        self._was_clean = self._clean
        self._set_clean(False)

    def unwritten(self) -> None:
        """Say that the writes ``writing`` announced did not happen (the fix stopped before writing a file):
        the checkout is as it was, so the next ``reset_to`` needs no `git reset --hard` and `git clean`."""
        self._set_clean(self._was_clean)

    # -- commits ---------------------------------------------------------
    def stage(self, files: list[str], only: bool = False) -> list[Staged]:
        """Stage ``files`` (even ones .gitignore hides) plus any other edit; what a commit would record.

        Renames are detected (``-M``) so that one is named as such, not as a deletion and an addition.
        ``only``: the caller wrote exactly ``files`` since ``writing`` (a fix that returns what it wrote), so
        only they are staged: `git add --all` alone stats every file of the checkout (20,000 on a large
        monorepo) and walks every directory for new ones, per commit. Plain files are then staged as git
        objects, not in the index (``_stage_objects``).
        """
        existing = [f for f in files if (self.path / f).exists() or (self.path / f).is_symlink()]
        self._exact = only and bool(files) and len(existing) == len(files)
        self._staged_tree = None
        out = None
        if self._exact:  # the same as below for these paths: ignored ones are added with --force there too
            found = self.ignored(existing)
            out = self._stage_objects(existing)
            if out is None:
                self._sync_index()
                subprocess.run(
                    ["git", "-C", str(self.path), "--literal-pathspecs", "add", "--all", "--force", "--", *existing],
                    check=True,
                    capture_output=True,
                    env=git_env(),
                )
        else:
            self._sync_index()
            self.repo.git.add("--all")
            found = self.ignored(existing)
        self._ignored = (existing, found)  # the implementer asks next, for its notes
        hidden = set(found)  # only these need --force (another rewrite of the whole index)
        if hidden and not self._exact:
            self.repo.git.add("--force", "--", *(f for f in existing if f in hidden))
        if out is None:  # --numstat too: the commit's ``numstat`` (what `git show --numstat` says of it)
            out = subprocess.run(
                ["git", "-C", str(self.path), "diff", "--cached", "--raw", "--numstat", "-z", "-M", "--no-abbrev"],
                check=True,
                capture_output=True,
                env=git_env(),
            ).stdout.decode("utf-8", "surrogateescape")
        fields = out.split("\0")
        staged, at, raw = [], 0, []
        while at < len(fields) and fields[at].startswith(":"):  # the --raw records, then the --numstat ones
            old_mode, new_mode, old_blob, new_blob, status = fields[at][1:].split(" ", 4)
            first = fields[at + 1] if at + 1 < len(fields) else ""
            second = fields[at + 2] if status[:1] in ("R", "C") and at + 2 < len(fields) else ""
            at += 3 if status[:1] in ("R", "C") else 2
            raw.append((old_mode, new_mode, old_blob, new_blob, status, first, second))
            staged.append(
                Staged(
                    status=status,
                    path=second or first,
                    old_mode=old_mode,
                    new_mode=new_mode,
                    old_path=first if second else "",
                )
            )
        self._staged_numstat = _numstat_of(fields[at:])
        self._staged_raw = raw
        return staged

    def _stage_objects(self, files: list[str]) -> str | None:
        """Stage ``files`` as `git add` would, but as git objects: their blobs, and the trees from theirs up to
        a new root tree, which ``commit`` commits. The index is not read or written (``_BEHIND``). Returns what
        `git diff --cached --raw --numstat -z -M --no-abbrev` would print; None: not plain, use `git add`.

        Plain: no end-of-line conversion, executable bits and symlinks recorded (git's defaults), SHA-1
        objects, no sparse checkout, case-sensitive paths, no attributes on the files (a filter or ``text``
        would change what git stores), each a regular file or symlink that is not under a symlinked
        directory, not replacing a directory or a submodule, and not ``.gitattributes`` or ``.gitmodules``.
        """
        if (
            not self._plain_checkouts()
            or self._flag("core.filemode", True) is not True
            or self._flag("core.sparsecheckout", False) is not False
            or self._flag("core.ignorecase", False) is not False
            or self._config().get("extensions.objectformat", "sha1") != "sha1"
            or self._attributes(files)  # asked first: no blob is written for files `git add` will stage
        ):
            return None
        entries: dict[str, tuple[str, str]] = {}
        for path in files:
            parts = path.split("/")
            if (
                posixpath.normpath(path) != path
                or path.startswith("/")
                or any(p in ("", ".", "..", ".git") for p in parts)
                or parts[-1] in (".gitattributes", ".gitmodules")
            ):
                return None
            try:
                if any(os.path.islink(self.path.joinpath(*parts[:i])) for i in range(1, len(parts))):
                    return None
                full = self.path / path
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    mode, data = "120000", os.fsencode(os.readlink(full))
                elif stat.S_ISREG(st.st_mode):
                    mode, data = ("100755" if st.st_mode & stat.S_IXUSR else "100644"), full.read_bytes()
                else:
                    return None
            except OSError:
                return None
            entries[path] = (mode, self._store(b"blob", data))
        head = self.head()
        old_root = self._root_tree(head)
        try:
            root = self._edit_tree(old_root, {p: (int(m, 8), bytes.fromhex(b)) for p, (m, b) in entries.items()})
        except ValueError:  # a file where git has a directory or a submodule, or the reverse
            return None
        self._staged_tree = (head, root, entries)
        # The same diff `git diff --cached` prints, between the two trees; an index file that does not exist
        # (an empty index) keeps git from reading the real one, which this diff does not need.
        return subprocess.run(
            ["git", "-C", str(self.path), "diff", "--raw", "--numstat", "-z", "-M", "--no-abbrev", old_root, root],
            check=True,
            capture_output=True,
            env=self._no_index_env(),
        ).stdout.decode("utf-8", "surrogateescape")

    def _no_index_env(self) -> dict[str, str]:
        """``git_env`` with an index file that does not exist: for git commands that read the index though
        they need nothing of it (a diff between two trees, attributes of a clean checkout)."""
        return {**git_env(), "GIT_INDEX_FILE": str(self._gitdir / "pipeline-no-index")}

    def _attributes(self, paths: list[str]) -> bool:
        """Does any git attribute apply to ``paths`` (of a clean checkout, whose .gitattributes files are in
        the worktree: the index, which git would read too, is not needed)?"""
        attrs = subprocess.run(
            ["git", "-C", str(self.path), "check-attr", "-a", "-z", "--stdin"],
            input="\0".join(paths).encode("utf-8", "surrogateescape"),
            capture_output=True,
            env=self._no_index_env(),
        )
        return attrs.returncode != 0 or bool(attrs.stdout.strip(b"\0"))

    def _store(self, kind: bytes, data: bytes) -> str:
        """Write a loose object, as `git hash-object -w` does, with gitdb in this process (GitPython's own
        object database would start a `git hash-object` per object)."""
        from gitdb import IStream, LooseObjectDB

        if self._loose is None:
            self._loose = LooseObjectDB(self.repo.odb.root_path())
        return self._loose.store(IStream(kind, len(data), io.BytesIO(data))).hexsha.decode("ascii")

    def _read(self, object_id: str) -> bytes:
        """An object's content, through GitPython's one `git cat-file --batch` (not a process per object)."""
        return self.repo.odb.stream(bytes.fromhex(object_id)).read()

    def _root_tree(self, commit: str) -> str:
        """The root tree id of ``commit``."""
        known = _ROOTS.get(commit)
        if known is None:
            known = self.repo.commit(commit).tree.hexsha
            keep(_ROOTS, commit, known)
        return known

    def _edit_tree(self, tree: str | None, changes: dict[str, tuple[int, bytes]]) -> str:
        """The id of ``tree`` (None: an empty one) with ``changes`` (path -> (mode, binary blob id)) made to
        it: each tree on the way is read, edited and written again, from the leaves up. ValueError: a path
        meets a file or submodule where it needs a directory, or replaces a directory."""
        from git.objects.fun import tree_entries_from_data

        here: dict[str, tuple[bytes, int]] = {}
        if tree is not None:
            here = {name: (sha, mode) for sha, mode, name in tree_entries_from_data(self._read(tree))}
        below: dict[str, dict[str, tuple[int, bytes]]] = {}
        for path, (mode, sha) in changes.items():
            name, sep, rest = path.partition("/")
            if sep:
                below.setdefault(name, {})[rest] = (mode, sha)
                continue
            if name in here and here[name][1] in (_TREE_MODE, _GITLINK_MODE):
                raise ValueError(f"{name} is a directory or a submodule")
            here[name] = (sha, mode)
        for name, sub in below.items():
            old = here.get(name)
            if old is not None and old[1] != _TREE_MODE:
                raise ValueError(f"{name} is not a directory")
            here[name] = (bytes.fromhex(self._edit_tree(old[0].hex() if old else None, sub)), _TREE_MODE)

        def order(item: tuple[str, tuple[bytes, int]]) -> bytes:  # git's: a directory sorts as "name/"
            name, (_sha, mode) = item
            return name.encode("utf-8", "surrogateescape") + (b"/" if mode == _TREE_MODE else b"")

        return self._store(
            b"tree",
            b"".join(
                b"%o %s\0%s" % (mode, name.encode("utf-8", "surrogateescape"), sha)
                for name, (sha, mode) in sorted(here.items(), key=order)
            ),
        )

    def _sync_index(self, then: str = "", check: bool = True) -> None:
        """Write the index entries lagging behind HEAD (``_BEHIND``), then the entries ``then``
        (`update-index --index-info` records), in one `git update-index`. A checkout known clean stays so."""
        behind = _BEHIND.pop(self._key, None)
        if not behind and not then:
            return
        clean = self._clean
        entries = "".join(f"{mode} {blob}\t{path}\0" for path, (mode, blob) in (behind or {}).items()) + then
        done = subprocess.run(
            ["git", "-C", str(self.path), "update-index", "-z", "--index-info"],
            input=entries.encode("utf-8", "surrogateescape"),
            capture_output=True,
            env=git_env(),
        )
        if check and done.returncode != 0:
            raise git.GitCommandError(["git", "update-index", "--index-info"], done.returncode, done.stderr)
        if clean and done.returncode == 0:
            self._set_clean(True)

    def commit(
        self, files: list[str], message: str, trailers: dict[str, str], staged: list[Staged] | None = None
    ) -> str | None:
        """Commit ``files`` (even ones .gitignore hides) plus any other edit; None when nothing changed.

        ``staged``: what ``stage`` returned just before (nothing written since), so it isn't staged twice."""
        if staged is None:
            staged = self.stage(files)
        objects, self._staged_tree = self._staged_tree, None
        if not staged:
            if self._exact:  # the files were written back as they were: the checkout is as it was
                self._set_clean(self._was_clean)
            return None
        body = message.rstrip() + "\n\n" + "\n".join(f"{k}: {v}" for k, v in trailers.items()) + "\n"
        numstat, self._staged_numstat = self._staged_numstat, None
        raw, self._staged_raw = self._staged_raw, None
        if objects is not None and objects[0] != self.head():
            raise RuntimeError("HEAD moved between stage and commit")
        sha = self._commit_with_message(body, tree=objects[1] if objects else None)
        if objects is not None:  # the index still has what the parent had at these paths
            _BEHIND.setdefault(self._key, {}).update(objects[2])
            keep(_ROOTS, sha, objects[1])
        parent = _PARENTS[sha]  # recorded by the commit just made
        if raw is not None:
            _remember_raw(parent, sha, raw)
        if not any(s.status.startswith("C") for s in staged):  # what `git diff --no-renames` names: both sides
            remember_changed(self.path, parent, sha, [p for s in staged for p in (s.path, s.old_path) if p])
        if numstat is not None and self._renames_by_default():  # `git show` would detect renames as -M did
            keep(_NUMSTATS, sha, numstat)
        if self._exact:  # everything written is committed: the checkout is as clean as before the writes
            self._set_clean(self._was_clean)
        return sha

    def _commit_with_message(self, body: str, tree: str | None = None) -> str:
        """Commit what is staged (``tree``: that tree), with the commit ``git commit -F`` makes, by git's plumbing.

        Why not ``git commit``: it refreshes the index first, a stat of every file of the checkout (20,000
        on a large monorepo) per commit, though ``stage`` just did that. Our git commands run no hooks
        (``engine.gitenv``), so the plumbing makes the same commit: the staged tree, parent HEAD, the message
        cleaned as ``git commit`` cleans a message it does not edit (``_stripspace``), the same reflog entry.
        """

        def git(*args: str, text: str | None = None) -> str:
            return (
                subprocess.run(
                    ["git", "-C", str(self.path), *args],
                    input=None if text is None else text.encode(),
                    check=True,
                    capture_output=True,
                    env=git_env(),
                )
                .stdout.decode()
                .strip()
            )

        message = _stripspace(body)
        parent = self.head()
        tree = tree or git("write-tree")
        sha = git("commit-tree", tree, "-p", parent, "-F", "-", text=message)
        git("update-ref", "-m", "commit: " + message.split("\n", 1)[0], "HEAD", sha, parent)
        keep(_PARENTS, sha, parent)
        return sha

    def parent(self, sha: str) -> str | None:
        """The first parent of commit ``sha`` (None for a root commit): of a commit made here, without asking git."""
        if sha in _PARENTS:
            return _PARENTS[sha]
        parents = self.repo.commit(sha).parents  # GitPython's one `git cat-file` process, not one per question
        return parents[0].hexsha if parents else None

    def ignored(self, files: list[str]) -> list[str]:
        """Which of ``files`` the repository's ignore rules would hide."""
        if not files:
            return []
        asked, self._ignored = self._ignored, None
        if asked is not None and asked[0] == files:  # asked again right after ``stage``, nothing written since
            return list(asked[1])
        # -z: paths come back as they are, not C-quoted (non-ASCII, spaces, quotes).
        proc = subprocess.run(
            ["git", "-C", str(self.path), "check-ignore", "--no-index", "--stdin", "-z"],
            input="\0".join(files).encode("utf-8", "surrogateescape"),
            capture_output=True,
            env=git_env(),
        )
        return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]

    def task_commits(self, since: str) -> list[TaskCommit]:
        """Commits on the branch after ``since`` that carry pipeline trailers, oldest first."""
        fmt = f"%H%x1f%(trailers:key={TRAILER_PHASE},valueonly,separator=)%x1f%(trailers:key={TRAILER_TASK},valueonly,separator=)%x1e"
        out = self.repo.git.log("--reverse", f"--format={fmt}", f"{since}..HEAD")
        found = []
        for rec in out.split("\x1e"):
            rec = rec.strip()
            if not rec:
                continue
            sha, phase, task = (part.strip() for part in rec.split("\x1f"))
            if task:
                found.append(TaskCommit(sha=sha, phase=phase, task=task))
        return found

    def numstat(self, sha: str) -> tuple[list[str], int, int]:
        """The files ``sha`` changed and its lines added and removed (`git show --numstat`).

        A commit made here was measured when it was staged (``stage``): no other git process."""
        known = _NUMSTATS.get(sha)
        if known is not None:
            return list(known[0]), known[1], known[2]
        # -z: paths as they are (without it git C-quotes non-ASCII names: "services/caf\303\251/...").
        return _numstat_of(self.repo.git.show("--numstat", "-z", "--format=", sha).lstrip("\n").split("\0"))

    def cherry_pick(self, sha: str) -> bool:
        """Re-apply ``sha`` on HEAD; False (and nothing changed) when it conflicts."""
        self._sync_index()  # a pick merges into the index: it must say what HEAD says
        clean = self._clean  # a pick on a clean checkout leaves it clean; until it is done, nothing is known
        self._set_clean(False)
        try:
            self.repo.git.cherry_pick("--allow-empty", "--keep-redundant-commits", sha)
            self._set_clean(clean)
            return True
        except git.GitCommandError:
            self.repo.git.cherry_pick("--abort")
            self._set_clean(clean)
            return False
