"""The environment our git child processes run with (no GitPython import: analysis stays light)."""

from __future__ import annotations

import os

# Our git commands must not leave background processes (auto gc, maintenance)
# or run the user's hooks inside the run's worktree.
GIT_ENV = {
    "GIT_CONFIG_COUNT": "4",
    "GIT_CONFIG_KEY_0": "gc.auto",
    "GIT_CONFIG_VALUE_0": "0",
    "GIT_CONFIG_KEY_1": "maintenance.auto",
    "GIT_CONFIG_VALUE_1": "false",
    "GIT_CONFIG_KEY_2": "core.hooksPath",
    "GIT_CONFIG_VALUE_2": os.devnull,
    "GIT_CONFIG_KEY_3": "commit.gpgSign",
    "GIT_CONFIG_VALUE_3": "false",
    "GIT_AUTHOR_NAME": "pipeline",
    "GIT_AUTHOR_EMAIL": "pipeline@localhost",
    "GIT_COMMITTER_NAME": "pipeline",
    "GIT_COMMITTER_EMAIL": "pipeline@localhost",
    "GIT_TERMINAL_PROMPT": "0",
}


def git_env() -> dict[str, str]:
    return {**os.environ, **GIT_ENV}


def reading_env() -> dict[str, str]:
    """``git_env`` for reading the user's own checkout: `git status` would otherwise refresh and rewrite its
    index (an optional lock), and the user's index is never ours to write."""
    return {**git_env(), "GIT_OPTIONAL_LOCKS": "0"}
