"""Samples and their label events: relabel, exclude, bulk actions, undo, the log."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from data.store.base import ACTIONS, LABEL_ACTIONS, StoreError, check_reviewer, chunks, now


class LabelsMixin:
    def samples(self, *, ids: Sequence[int] | None = None, with_meta: bool = False) -> pd.DataFrame:
        """Rows with their current state, in import order.

        Columns: id, ext_id, text, original_label, label, split, excluded, reviewed, reviewer,
        reviewed_at, n_reviewers, conflict, encoding_fixed (and ``meta`` as dicts when
        ``with_meta``).
        """
        cols = (
            "id, ext_id, text, original_label, label, split, excluded, reviewed, reviewer,"
            " reviewed_at, n_reviewers, conflict, encoding_fixed" + (", meta" if with_meta else "")
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
        for col in ("excluded", "reviewed", "conflict", "encoding_fixed"):
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

    def sample_ids(self, ext_ids: Sequence[str]) -> list[int]:
        """The store's ids of the samples with these ids as the user typed them (``ext_id``).

        Raises
        ------
        StoreError
            Naming the ids that are not in the workspace.
        """
        wanted = [str(e) for e in ext_ids]
        found: dict[str, int] = {}
        for part in chunks(wanted, 500):
            marks = ",".join("?" * len(part))
            for row in self._read(
                f"SELECT ext_id, id FROM samples WHERE ext_id IN ({marks})", list(part)
            ):
                found[row["ext_id"]] = int(row["id"])
        missing = [e for e in wanted if e not in found]
        if missing:
            shown = ", ".join(repr(e) for e in missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise StoreError(
                f"No sample with id {shown} in this workspace. Ids are matched exactly as "
                "imported (see the id column of an export)."
            )
        return [found[e] for e in wanted]

    # -- label events ---------------------------------------------------------------------
    def relabel(
        self, sample_id: int, new_label: str, *, reviewer: str, action: str = "relabel"
    ) -> int:
        """Set a sample's label and log it; returns the event id once committed.

        ``action`` says why: ``"confirm"`` (keep the label), ``"accept"`` (take the model's
        suggestion) or ``"relabel"`` (the reviewer chose another label).
        """
        if action not in LABEL_ACTIONS:
            raise ValueError(
                f"Unknown action {action!r}; valid: {list(LABEL_ACTIONS)} "
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
            if action in LABEL_ACTIONS and label not in labels:
                raise ValueError(
                    f"Unknown label {label!r} for sample {sample_id}; valid: {sorted(labels)}."
                )
        batch_id = uuid.uuid4().hex
        event_ids = self._write(self._append_events, actions, reviewer, batch_id, None)
        self._backup_if_due(len(event_ids))
        return event_ids

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
        events = conn.execute(
            "SELECT e.action, e.new_label, e.new_excluded, e.reviewer, e.created_at,"
            " EXISTS (SELECT 1 FROM label_events u WHERE u.undoes_batch = e.batch_id) AS undone"
            " FROM label_events e WHERE e.sample_id = ? ORDER BY e.id",
            (sample_id,),
        ).fetchall()
        original = conn.execute(
            "SELECT original_label FROM samples WHERE id = ?", (sample_id,)
        ).fetchone()[0]
        state = derive_state(original, [dict(e) for e in events])
        conn.execute(
            "UPDATE samples SET label = :label, excluded = :excluded, reviewed = :reviewed,"
            " reviewer = :reviewer, reviewed_at = :reviewed_at, n_reviewers = :n_reviewers,"
            " conflict = :conflict,"
            " disagrees = (predicted_label IS NOT NULL AND predicted_label != :label)"
            " WHERE id = :id",
            {**state, "id": sample_id},
        )

    def rebuild_state(self) -> None:
        """Recompute every sample's current state from the event log alone."""
        self._write(self.rebuild_from_log)

    @classmethod
    def rebuild_from_log(cls, conn: sqlite3.Connection) -> None:
        """:meth:`rebuild_state` inside the caller's transaction (a restore uses it on a
        database that is not open as a Workspace yet)."""
        conn.execute(
            "UPDATE samples SET label = original_label, excluded = 0, reviewed = 0,"
            " reviewer = NULL, reviewed_at = NULL, n_reviewers = 0, conflict = 0,"
            " disagrees = (predicted_label IS NOT NULL AND predicted_label != original_label)"
        )
        for (sample_id,) in conn.execute("SELECT DISTINCT sample_id FROM label_events").fetchall():
            cls._refresh_state(conn, int(sample_id))

    def undo(self, *, reviewer: str) -> list[int]:
        """Revert ``reviewer``'s last action (a whole batch) by appending events.

        The log is never rewritten: each reverted sample gets an ``undo`` event restoring the
        label and exclusion it had before. Repeated calls walk further back. Returns the new
        event ids (empty when there is nothing left to undo).
        """
        reviewer = check_reviewer(reviewer)
        event_ids = self._write(self._undo, reviewer)
        self._backup_if_due(len(event_ids))
        return event_ids

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


def derive_state(original_label: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """A sample's current state from its events, oldest first.

    The last event sets the label and exclusion (an ``undo`` event restores the earlier ones).
    A sample is reviewed while it has an action that was not undone; its reviewer is the one
    of the latest such action. It is *conflicting* when, since the last ``resolve``, reviewers'
    latest labels differ: the later one wins, and the sample is marked for a look.

    >>> derive_state("pos", [])["label"]
    'pos'
    >>> ev = lambda who, lab: {"action": "relabel", "new_label": lab, "new_excluded": 0,
    ...                        "reviewer": who, "created_at": "t", "undone": 0}
    >>> s = derive_state("pos", [ev("ana", "neg"), ev("bo", "pos")])
    >>> s["label"], s["conflict"], s["n_reviewers"]
    ('pos', 1, 2)
    """
    if not events:
        return {
            "label": original_label,
            "excluded": 0,
            "reviewed": 0,
            "reviewer": None,
            "reviewed_at": None,
            "n_reviewers": 0,
            "conflict": 0,
        }
    last = events[-1]
    effective = [e for e in events if e["action"] != "undo" and not e["undone"]]
    latest_by_reviewer: dict[str, str] = {}
    for e in effective:
        if e["action"] == "resolve":
            latest_by_reviewer = {}
        elif e["action"] in LABEL_ACTIONS:
            latest_by_reviewer[e["reviewer"]] = e["new_label"]
    return {
        "label": last["new_label"],
        "excluded": int(last["new_excluded"]),
        "reviewed": int(bool(effective)),
        "reviewer": effective[-1]["reviewer"] if effective else None,
        "reviewed_at": effective[-1]["created_at"] if effective else None,
        "n_reviewers": len({e["reviewer"] for e in effective}),
        "conflict": int(len(set(latest_by_reviewer.values())) > 1),
    }
