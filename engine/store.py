"""Where a run's state lives: its checkpoints, its record and the index of runs.

Two stores, chosen per command by ``--state URL`` or ``PIPELINE_STATE_URL``:

- the embedded default (no URL, or ``sqlite``): checkpoints in ``reports/<run-id>/state.sqlite``, the record in
  ``reports/<run-id>/run.json``, the index is the reports folder. One machine, nothing to operate.
- PostgreSQL (``postgres://`` or ``postgresql://``): checkpoints through LangGraph's ``PostgresSaver``, and beside
  them, in the same database, the record of every run (table ``pipeline_runs``, one row per run, the same
  redacted JSON as run.json). Every command that reads or changes a run (list, show, summary, resume, review,
  approve, reject, apply, rollback, prune) then sees every run that used that database, from any machine; the
  reports folder still gets the run's markdown reports and a copy of run.json.

Example: ``PIPELINE_STATE_URL=postgresql://ci@db/pipelines pipeline run NAME --repo .``
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

ENV = "PIPELINE_STATE_URL"
POSTGRES_SCHEMES = ("postgres://", "postgresql://")

# Seconds this process spent waiting on the database, by operation (connect, setup, checkpoint reads and writes,
# records): the parallel-runs bench reports them.
DB_SECONDS: dict[str, float] = {}


class StoreError(Exception):
    """A state URL that can't be used (unknown scheme, database unreachable); the message says which and why."""


def state_url(given: str | None = None) -> str:
    """The URL the user chose (``--state`` wins over ``PIPELINE_STATE_URL``); "" for the embedded default."""
    url = (given if given is not None else os.environ.get(ENV, "")).strip()
    return "" if url in ("", "sqlite") else url


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"


def open_store(given: str | None = None) -> FileStore | PostgresStore:
    """The store the user chose; :class:`StoreError` for a URL this can't use."""
    url = state_url(given)
    if not url:
        return FileStore()
    if url.startswith(POSTGRES_SCHEMES):
        return PostgresStore(url)
    raise StoreError(f"--state {shown(url)!r}: use a postgresql:// URL, or leave it out for the local SQLite files")


class FileStore:
    """The embedded default: everything in the run's folder (run.json, state.sqlite); the folder is the index."""

    remote = False
    url = ""

    def checkpointer(self, run_dir: Path):
        from agent_pipelines.engine.checkpoint import Checkpoints

        return Checkpoints(Path(run_dir) / "state.sqlite")

    def put(self, run_id: str, record_json: str) -> None:
        """run.json is the record; nothing more to write."""

    def get(self, run_id: str) -> str | None:
        return None

    def reserve(self, run_id: str, pipeline: str) -> bool:
        """The reports folder is one machine's: the time-and-random id is enough there."""
        return True

    def release(self, run_id: str) -> None:
        """Nothing was reserved."""

    def delete(self, run_id: str) -> None:
        """Nothing beside the run's folder (run.json, state.sqlite) to remove."""

    def records(self) -> list[str]:
        return []

    def close(self) -> None:
        """No connection to close."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


RUNS_TABLE = (
    """CREATE TABLE IF NOT EXISTS pipeline_runs (
        run_id   text PRIMARY KEY,
        pipeline text NOT NULL,
        repo     text NOT NULL,
        status   text NOT NULL,
        updated  timestamptz NOT NULL DEFAULT now(),
        record   jsonb NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS pipeline_runs_updated ON pipeline_runs (updated)",
)

# Held while the tables are made: sixteen runs starting at once against a new database would otherwise race on
# CREATE TABLE IF NOT EXISTS and on LangGraph's migration rows (both fail with a unique violation, not "exists").
SETUP_LOCK = 0x50495045  # "PIPE"


def _one(cursor) -> dict:
    """The row of a query that always returns one (a function call, an aggregate)."""
    row = cursor.fetchone()
    if row is None:
        raise StoreError("the database returned no row where one is always expected")
    return row


@contextmanager
def _timed(operation: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        DB_SECONDS[operation] = DB_SECONDS.get(operation, 0.0) + time.perf_counter() - started


class PostgresStore:
    """Checkpoints (LangGraph's PostgresSaver) and run records in one PostgreSQL database.

    One connection per command, in autocommit (what PostgresSaver expects); the tables are made on first use.
    """

    remote = True

    def __init__(self, url: str) -> None:
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError:
            raise StoreError(
                "a postgresql:// state needs psycopg and langgraph-checkpoint-postgres: "
                "pip install 'agent-pipelines[postgres]'"
            ) from None
        self.url = url
        try:
            with _timed("connect"):
                self.conn = psycopg.connect(
                    url, autocommit=True, prepare_threshold=0, row_factory=dict_row, connect_timeout=10
                )
        except psycopg.Error as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise StoreError(f"can't reach the state database {shown(url)}: {first}") from None
        self._saver = None
        self._setup()

    def _setup(self) -> None:
        from agent_pipelines.engine.checkpoint import serializer

        saver = _timed_saver(self.conn, _timed_serde(serializer()))
        with _timed("setup"):
            if not self._ready(len(saver.MIGRATIONS) - 1):
                # Polled, not waited for: a session blocked in pg_advisory_lock is a running transaction, and
                # LangGraph's migrations CREATE INDEX CONCURRENTLY, which waits for every running transaction
                # to end: the holder and the waiters deadlock (measured by bench/parallel_runs.py at N = 4).
                while not _one(self.conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (SETUP_LOCK,)))["got"]:
                    time.sleep(0.05)
                try:
                    saver.setup()
                    for statement in RUNS_TABLE:
                        self.conn.execute(statement)
                finally:
                    self.conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
        self._saver = saver

    def _ready(self, last_migration: int) -> bool:
        """The tables are there and LangGraph's migrations are all applied: nothing to set up (the usual case)."""
        row = _one(
            self.conn.execute(
                "SELECT to_regclass('pipeline_runs') IS NOT NULL AND "
                "to_regclass('checkpoint_migrations') IS NOT NULL AS made"
            )
        )
        if not row["made"]:
            return False
        row = _one(self.conn.execute("SELECT max(v) AS v FROM checkpoint_migrations"))
        return row["v"] is not None and row["v"] >= last_migration

    def checkpointer(self, run_dir: Path):
        return _Borrowed(self._saver)

    def put(self, run_id: str, record_json: str) -> None:
        """Write the run's record (the redacted JSON of run.json) and its index columns in one statement."""
        import json

        from psycopg.types.json import Jsonb

        record = json.loads(record_json)
        with _timed("record"):
            self.conn.execute(
                "INSERT INTO pipeline_runs (run_id, pipeline, repo, status, updated, record) "
                "VALUES (%s, %s, %s, %s, now(), %s) ON CONFLICT (run_id) DO UPDATE SET "
                "pipeline = EXCLUDED.pipeline, repo = EXCLUDED.repo, status = EXCLUDED.status, "
                "updated = now(), record = EXCLUDED.record",
                (run_id, record["run"]["pipeline"], record["run"]["repo"], record["status"], Jsonb(record)),
            )

    def reserve(self, run_id: str, pipeline: str) -> bool:
        """Take ``run_id`` for a new run, atomically: False when a run anywhere already has it.

        Why: run ids are the start second and 16 random bits; sixteen machines starting runs in the same
        second share one table, and two runs under one id would write one record and one checkpoint thread.
        The row says ``starting`` until the run's first record replaces it (lists skip it)."""
        with _timed("record"):
            cur = self.conn.execute(
                "INSERT INTO pipeline_runs (run_id, pipeline, repo, status, record) VALUES (%s, %s, '', 'starting', "
                "'{}') ON CONFLICT (run_id) DO NOTHING",
                (run_id, pipeline),
            )
        return cur.rowcount == 1

    def release(self, run_id: str) -> None:
        """Give back an id reserved for a run that never started (its record was never written)."""
        with _timed("record"):
            self.conn.execute("DELETE FROM pipeline_runs WHERE run_id = %s AND status = 'starting'", (run_id,))

    def get(self, run_id: str) -> str | None:
        import json

        with _timed("record"):
            row = self.conn.execute("SELECT record FROM pipeline_runs WHERE run_id = %s", (run_id,)).fetchone()
        return None if row is None else json.dumps(row["record"])

    def delete(self, run_id: str) -> None:
        """Forget the run here: its record and its checkpoints (the thread ``run_id``)."""
        with _timed("record"):
            self.conn.execute("DELETE FROM pipeline_runs WHERE run_id = %s", (run_id,))
        if self._saver is not None:
            with _timed("checkpoint write"):
                self._saver.delete_thread(run_id)

    def records(self) -> list[str]:
        """Every run's record (the JSON text), reserved ids left out."""
        import json

        with _timed("record"):
            rows = self.conn.execute(
                "SELECT record FROM pipeline_runs WHERE status <> 'starting' ORDER BY run_id"
            ).fetchall()
        return [json.dumps(row["record"]) for row in rows]

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Borrowed:
    """The store's saver, handed to one invocation like ``Checkpoints`` (``.saver``); the store closes it."""

    def __init__(self, saver) -> None:
        self.saver = saver

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _timed_saver(conn, serde):
    """A PostgresSaver whose database calls count in :data:`DB_SECONDS` (what the parallel-runs bench reports)."""
    from langgraph.checkpoint.postgres import PostgresSaver

    class TimedPostgresSaver(PostgresSaver):
        def get_tuple(self, config):
            with _timed("checkpoint read"):
                return super().get_tuple(config)

        def put(self, config, checkpoint, metadata, new_versions):
            with _timed("checkpoint write"):
                return super().put(config, checkpoint, metadata, new_versions)

        def put_writes(self, config, writes, task_id, task_path=""):
            with _timed("checkpoint write"):
                return super().put_writes(config, writes, task_id, task_path)

        def list(self, config, **kwargs):
            with _timed("checkpoint read"):
                found = list(super().list(config, **kwargs))
            yield from found

    return TimedPostgresSaver(conn, serde=serde)


def _timed_serde(serde):
    """``serde`` with its (de)serialization time counted apart ("serialize"): it runs inside the saver's calls,
    on this machine's CPU, not in the database."""

    class TimedSerializer(type(serde)):
        def dumps_typed(self, obj):
            with _timed("serialize"):
                return super().dumps_typed(obj)

        def loads_typed(self, data):
            with _timed("serialize"):
                return super().loads_typed(data)

    serde.__class__ = TimedSerializer
    return serde
