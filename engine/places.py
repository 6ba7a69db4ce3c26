"""Where runs live: the default reports directory and the index of every run, in the user's state directory.

A run's directory (run.json, checkpoints, reports) goes by default to
``$XDG_STATE_HOME/agent-pipelines/runs/<run-id>`` (``~/.local/state/...`` when
the variable is unset), never into the checkout: a run started from inside a
repository leaves no untracked file there, and ``pipeline list`` finds it from
any directory. Why the state directory rather than the repository's git
directory: the bundled example's repository is made inside the run's directory
(no git directory exists before it), one place lists runs across every
repository without walking the disk, and a run's reports outlive a repository
that was moved or deleted (``pipeline prune`` removes them).

``--reports-dir DIR`` still puts a run elsewhere. Every run, wherever its
directory is, is entered in the index (``index/<run-id>``: one small file whose
text is the run directory's path), so ``resume``, ``show``, ``rollback`` and
``apply`` find a run by its id alone.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "agent-pipelines"


def state_home() -> Path:
    """``$XDG_STATE_HOME/agent-pipelines`` (the XDG base directory spec's default: ``~/.local/state``)."""
    base = os.environ.get("XDG_STATE_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".local" / "state"  # the spec ignores relative
    return root / APP


def default_reports_dir() -> Path:
    return state_home() / "runs"


def _index() -> Path:
    return state_home() / "index"


def index_run(run_id: str, run_dir: Path) -> None:
    """Enter a run in the index. Best effort: a run whose index entry can't be written still runs, and
    ``--reports-dir`` finds it."""
    index = _index()
    try:
        index.mkdir(parents=True, exist_ok=True)
        tmp = index / f".{run_id}.tmp"
        tmp.write_text(str(Path(run_dir).resolve()) + "\n", encoding="utf-8")
        os.replace(tmp, index / run_id)
    except OSError:
        pass


def unindex(run_id: str) -> None:
    try:
        (_index() / run_id).unlink(missing_ok=True)
    except OSError:
        pass


def indexed() -> dict[str, Path]:
    """Every indexed run: its id and its directory (which may be gone: a moved or deleted reports directory)."""
    index = _index()
    found: dict[str, Path] = {}
    if not index.is_dir():
        return found
    for entry in sorted(index.iterdir()):
        if entry.name.startswith("."):
            continue
        try:
            found[entry.name] = Path(entry.read_text(encoding="utf-8").strip())
        except OSError:
            continue
    return found


def run_dirs(reports_dir: Path | None) -> list[Path]:
    """The run directories to list: those in ``reports_dir``, or (None) every indexed run whose directory is
    still there plus those in the default reports directory."""
    if reports_dir is not None:
        return sorted(p.parent for p in Path(reports_dir).glob("*/run.json"))
    dirs = {p.parent.resolve() for p in default_reports_dir().glob("*/run.json")}
    dirs |= {d for d in indexed().values() if (d / "run.json").is_file()}
    return sorted(dirs, key=lambda d: (d.name, str(d)))


def find_run_dir(run_id: str, reports_dir: Path | None) -> tuple[Path, str]:
    """The directory of run ``run_id`` and, when it is not there, a clause saying where it was looked for."""
    if reports_dir is not None:
        return Path(reports_dir) / run_id, f"in {reports_dir}"
    known = indexed().get(run_id)
    if known is not None:
        if (known / "run.json").is_file():
            return known, ""
        return known, f"at {known} (its directory was moved or deleted; pass --reports-dir with where it is now)"
    return default_reports_dir() / run_id, f"in {default_reports_dir()} or the run index"
