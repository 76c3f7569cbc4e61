"""The user study's votes in SQLite: WAL mode, one transaction per vote, fsync'd before it returns.

A vote that `add` returned for is on disk: a server killed right after keeps it (synchronous=FULL).
Each call opens its own connection, so the demo's worker threads and a running report can share
the file. Only the standard library: `evaluate/user_study.py report` reads it without torch.
"""
from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from utils.errors import UserError

SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id       INTEGER PRIMARY KEY,
    study    TEXT NOT NULL,
    created  REAL NOT NULL,
    prompt   TEXT,
    seed     INTEGER,
    left     TEXT NOT NULL,
    right    TEXT NOT NULL,
    choice   TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie')),
    winner   TEXT,
    loser    TEXT,
    session  TEXT
)
"""


@dataclass(frozen=True)
class Vote:
    """One judgement: which of two images, of the same prompt and seed, a person preferred."""

    study: str
    prompt: str | None
    seed: int
    left: str
    """The system whose image was shown on the left."""
    right: str
    choice: str
    """'left', 'right' or 'tie'."""
    session: str = ""

    @property
    def winner(self) -> str | None:
        return {"left": self.left, "right": self.right}.get(self.choice)

    @property
    def loser(self) -> str | None:
        return {"left": self.right, "right": self.left}.get(self.choice)


class VoteStore:
    """Append-only votes in one SQLite file."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise UserError(f"no study database at {self.path}: give the file the study server wrote (--db)")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with closing(self._connect()) as con:
                mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if create:
                    con.execute(SCHEMA)
        except sqlite3.DatabaseError as err:
            raise UserError(f"{self.path} is not a study database ({err}): give the file the study wrote") from None
        if mode.lower() != "wal":
            raise UserError(f"cannot put {self.path} in WAL mode (got {mode}): use a file on a local disk")

    def _connect(self) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            con.execute("PRAGMA synchronous=FULL")
            return con
        except sqlite3.DatabaseError as err:
            raise UserError(f"{self.path} is not a study database ({err}): give the file the study wrote") from None

    def add(self, vote: Vote) -> int:
        """Record one vote in its own transaction; returns its id once it is on disk."""
        if vote.choice not in ("left", "right", "tie"):
            raise UserError(f"a vote is 'left', 'right' or 'tie', not '{vote.choice}'")
        with closing(self._connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                cur = con.execute(
                    "INSERT INTO votes (study, created, prompt, seed, left, right, choice, winner, loser, session) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (vote.study, time.time(), vote.prompt, vote.seed, vote.left, vote.right, vote.choice,
                     vote.winner, vote.loser, vote.session))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return int(cur.lastrowid)

    def votes(self, study: str | None = None) -> list[Vote]:
        """Every vote (of one study, or all), oldest first."""
        query = "SELECT study, prompt, seed, left, right, choice, session FROM votes"
        args: tuple = ()
        if study is not None:
            query += " WHERE study = ?"
            args = (study,)
        try:
            with closing(self._connect()) as con:
                rows = con.execute(query + " ORDER BY id", args).fetchall()
        except sqlite3.DatabaseError as err:
            raise UserError(f"{self.path} is not a study database ({err})") from None
        return [Vote(*r) for r in rows]

    def count(self, study: str | None = None) -> int:
        return len(self.votes(study))
