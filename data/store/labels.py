"""Samples and their label events: relabel, exclude, bulk actions, undo, the log."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from data.store.base import ACTIONS, StoreError, check_reviewer, chunks, now
from data.store.schema import STATE_SQL


class LabelsMixin:
    def samples(self, *, ids: Sequence[int] | None = None, with_meta: bool = False) -> pd.DataFrame:
        """Rows with their current state, in import order.

        Columns: id, ext_id, text, original_label, label, split, excluded, reviewed, reviewer,
        reviewed_at, encoding_fixed (and ``meta`` as dicts when ``with_meta``).
        """
        cols = (
            "id, ext_id, text, original_label, label, split, excluded, reviewed, reviewer,"
            " reviewed_at, encoding_fixed" + (", meta" if with_meta else "")
        )
        if ids is None:
            df = self._frame(f"SELECT {cols} FROM samples ORDER BY id")
        else:
            ids = [int(i) for i in ids]
            parts = [
                self._frame(
                    f"SELECT {cols} FROM samples WHERE id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                for chunk in chunks(ids, 900)
            ]
            df = (
                pd.concat(parts, ignore_index=True)
                if parts
                else self._frame(f"SELECT {cols} FROM samples WHERE 0")
            )
            df = df.set_index("id").loc[ids].reset_index()
        for col in ("excluded", "reviewed", "encoding_fixed"):
            df[col] = df[col].astype(bool)
        if with_meta:
            df["meta"] = [json.loads(m) if m else {} for m in df["meta"]]
        return df

    def sample(self, sample_id: int) -> dict[str, Any]:
        rows = self._read("SELECT * FROM samples WHERE id = ?", (int(sample_id),))
        if not rows:
            raise StoreError(f"No sample with id {sample_id} in workspace {self.name}.")
        out = dict(rows[0])
        out["meta"] = json.loads(out["meta"]) if out["meta"] else {}
        for col in ("excluded", "reviewed", "encoding_fixed"):
            out[col] = bool(out[col])
        return out

    # -- label events ---------------------------------------------------------------------
    def relabel(
        self, sample_id: int, new_label: str, *, reviewer: str, action: str = "relabel"
    ) -> int:
        """Set a sample's label and log it; returns the event id once committed.

        ``action`` says why: ``"confirm"`` (keep the label), ``"accept"`` (take the model's
        suggestion) or ``"relabel"`` (the reviewer chose another label).
        """
        if action not in ("confirm", "accept", "relabel"):
            raise ValueError(
                f"Unknown action {action!r}; valid: 'confirm', 'accept', 'relabel' "
                "(use set_excluded to exclude or include)."
            )
        return self.apply_actions([(sample_id, action, new_label)], reviewer=reviewer)[0]

    def set_excluded(self, sample_id: int, excluded: bool = True, *, reviewer: str) -> int:
        """Exclude a sample from training (or include it again); returns the event id."""
        action = "exclude" if excluded else "include"
        return self.apply_actions([(sample_id, action, None)], reviewer=reviewer)[0]

    def apply_actions(
        self, actions: Iterable[tuple[int, str, str | None]], *, reviewer: str
    ) -> list[int]:
        """Apply ``(sample_id, action, label)`` triples as ONE batch in one transaction.

        One :meth:`undo` reverts the whole batch (bulk relabels are one action to the reviewer).
        """
        reviewer = check_reviewer(reviewer)
        actions = list(actions)
        labels = set(self.label_names)
        for sample_id, action, label in actions:
            if action not in ACTIONS or action == "undo":
                raise ValueError(f"Unknown action {action!r}; valid: {list(ACTIONS[:-1])}.")
            if action in ("confirm", "accept", "relabel") and label not in labels:
                raise ValueError(
                    f"Unknown label {label!r} for sample {sample_id}; valid: {sorted(labels)}."
                )
        batch_id = uuid.uuid4().hex
        return self._write(self._append_events, actions, reviewer, batch_id, None)

    def _append_events(
        self,
        conn: sqlite3.Connection,
        actions: list[tuple[int, str, str | None]],
        reviewer: str,
        batch_id: str,
        undoes_batch: str | None,
        restore: dict[int, tuple[str, int]] | None = None,
    ) -> list[int]:
        ts = now()
        event_ids = []
        for sample_id, action, label in actions:
            row = conn.execute(
                "SELECT label, excluded FROM samples WHERE id = ?", (int(sample_id),)
            ).fetchone()
            if row is None:
                raise StoreError(f"No sample with id {sample_id}; nothing was changed.")
            old_label, old_excl = row["label"], int(row["excluded"])
            if action == "undo":
                new_label, new_excl = restore[int(sample_id)]
            elif action == "exclude":
                new_label, new_excl = old_label, 1
            elif action == "include":
                new_label, new_excl = old_label, 0
            else:
                new_label, new_excl = label, old_excl
            cur = conn.execute(
                "INSERT INTO label_events (sample_id, action, old_label, new_label, old_excluded,"
                " new_excluded, reviewer, created_at, batch_id, undoes_batch)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    int(sample_id),
                    action,
                    old_label,
                    new_label,
                    old_excl,
                    new_excl,
                    reviewer,
                    ts,
                    batch_id,
                    undoes_batch,
                ),
            )
            event_ids.append(int(cur.lastrowid))
            self._refresh_state(conn, int(sample_id))
        return event_ids

    @staticmethod
    def _refresh_state(conn: sqlite3.Connection, sample_id: int) -> None:
        """Recompute one sample's materialised state from its events (the log is the truth)."""
        conn.execute(STATE_SQL + " WHERE s.id = ?", (sample_id,))

    def rebuild_state(self) -> None:
        """Recompute every sample's current state from the event log alone."""
        self._write(lambda c: c.execute(STATE_SQL))

    def undo(self, *, reviewer: str) -> list[int]:
        """Revert ``reviewer``'s last action (a whole batch) by appending events.

        The log is never rewritten: each reverted sample gets an ``undo`` event restoring the
        label and exclusion it had before. Repeated calls walk further back. Returns the new
        event ids (empty when there is nothing left to undo).
        """
        reviewer = check_reviewer(reviewer)
        return self._write(self._undo, reviewer)

    def _undo(self, conn: sqlite3.Connection, reviewer: str) -> list[int]:
        row = conn.execute(
            "SELECT batch_id FROM label_events e WHERE reviewer = ? AND action != 'undo'"
            " AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes_batch = e.batch_id)"
            " ORDER BY id DESC LIMIT 1",
            (reviewer,),
        ).fetchone()
        if row is None:
            return []
        batch = row["batch_id"]
        events = conn.execute(
            "SELECT sample_id, old_label, old_excluded FROM label_events WHERE batch_id = ?"
            " ORDER BY id DESC",
            (batch,),
        ).fetchall()
        # A batch touches each sample once; restoring in reverse order handles repeats anyway.
        restore: dict[int, tuple[str, int]] = {}
        for e in events:
            restore[int(e["sample_id"])] = (e["old_label"], int(e["old_excluded"]))
        actions = [(sid, "undo", None) for sid in restore]
        return self._append_events(conn, actions, reviewer, uuid.uuid4().hex, batch, restore)

    def events(
        self,
        *,
        sample_id: int | None = None,
        reviewer: str | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """The label event log, newest first."""
        where, params = [], []
        if sample_id is not None:
            where.append("sample_id = ?")
            params.append(int(sample_id))
        if reviewer is not None:
            where.append("reviewer = ?")
            params.append(reviewer)
        sql = "SELECT * FROM label_events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._frame(sql, params)
