"""Samples and their events: relabel, exclude, bulk actions, text repairs, undo, the log.

One append-only log (``label_events``) holds label events and text events (``repair_text``):
a row's current label, exclusion and text are all derived from it (:func:`derive_state`). A
text event carries the row's label unchanged and a label event carries no text, so undoing one
kind never reverts the other.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import Any

import pandas as pd

from data.store.base import (
    ACTIONS,
    LABEL_ACTIONS,
    TEXT_ACTIONS,
    StoreError,
    check_reviewer,
    chunks,
    now,
)
from data.store.dialect import Connection, dialect_of


class LabelsMixin:
    def samples(self, *, ids: Sequence[int] | None = None, with_meta: bool = False) -> pd.DataFrame:
        """Rows with their current state, in import order.

        Columns: id, ext_id, text (current), given_text (as imported), given_label, label,
        split, excluded, reviewed, reviewer, reviewed_at, n_reviewers, conflict,
        encoding_fixed (and ``meta`` as dicts when ``with_meta``).
        """
        cols = (
            "id, ext_id, text, given_text, given_label, label, split, excluded, reviewed,"
            " reviewer, reviewed_at, n_reviewers, conflict, encoding_fixed"
            + (", meta" if with_meta else "")
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
                else self._frame(f"SELECT {cols} FROM samples WHERE 1 = 0")
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
        valid = [a for a in ACTIONS if a != "undo" and a not in TEXT_ACTIONS]
        for sample_id, action, label in actions:
            if action not in valid:
                raise ValueError(
                    f"Unknown action {action!r}; valid: {valid} (texts are repaired with "
                    "repair_texts, undone with undo)."
                )
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
        conn: Connection,
        actions: list[tuple[int, str, str | None]],
        reviewer: str,
        batch_id: str,
        undoes_batch: str | None,
        restore: dict[int, tuple[str | None, int | None, str | None]] | None = None,
    ) -> list[int]:
        """Append ``(sample_id, action, value)`` events (``value``: the label of a label action,
        the new text of ``repair_text``) and refresh each row's derived state. An ``undo``
        takes ``restore[sample_id] = (label, excluded, text)``, None where it keeps the current
        value."""
        ts = now()
        event_ids = []
        texts_changed = False
        for sample_id, action, value in actions:
            row = conn.execute(
                "SELECT label, excluded, text FROM samples WHERE id = ?", (int(sample_id),)
            ).fetchone()
            if row is None:
                raise StoreError(f"No sample with id {sample_id}; nothing was changed.")
            old_label, old_excl = row["label"], int(row["excluded"])
            new_label, new_excl = old_label, old_excl
            old_text = new_text = None
            if action == "undo":
                label, excl, text = restore[int(sample_id)]
                new_label = old_label if label is None else label
                new_excl = old_excl if excl is None else int(excl)
                if text is not None:
                    old_text, new_text = row["text"], text
            elif action == "exclude":
                new_excl = 1
            elif action == "include":
                new_excl = 0
            elif action in TEXT_ACTIONS:
                old_text, new_text = row["text"], value
            else:
                new_label = value
            event_id = dialect_of(conn).insert_id(
                conn,
                "INSERT INTO label_events (sample_id, action, old_label, new_label, old_excluded,"
                " new_excluded, reviewer, created_at, batch_id, undoes_batch, old_text, new_text)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
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
                    old_text,
                    new_text,
                ),
            )
            event_ids.append(event_id)
            texts_changed |= self._refresh_state(conn, int(sample_id))
        if texts_changed:
            # The neighbor graph was built from the old texts: the next analysis rebuilds it.
            # (Its files stay until prune_artifacts: a rollback here must not lose them.)
            conn.execute("DELETE FROM knn_graphs")
        return event_ids

    @staticmethod
    def _refresh_state(conn: Connection, sample_id: int, *, fts: bool = True) -> bool:
        """Recompute one sample's materialised state from its events (the log is the truth);
        returns whether its current text changed. ``fts``: update the row's entry in the text
        search index too (a caller that rebuilds the whole index passes False)."""
        events = conn.execute(
            "SELECT e.action, e.new_label, e.new_excluded, e.reviewer, e.created_at, e.new_text,"
            " EXISTS (SELECT 1 FROM label_events u WHERE u.undoes_batch = e.batch_id) AS undone"
            " FROM label_events e WHERE e.sample_id = ? ORDER BY e.id",
            (sample_id,),
        ).fetchall()
        given_label, given_text, text = conn.execute(
            "SELECT given_label, given_text, text FROM samples WHERE id = ?", (sample_id,)
        ).fetchone()
        state = derive_state(given_label, [dict(e) for e in events], given_text=given_text)
        dialect = dialect_of(conn)
        disagrees = dialect.as_int("predicted_label IS NOT NULL AND predicted_label != ?")
        conn.execute(
            "UPDATE samples SET label = ?, excluded = ?, reviewed = ?, reviewer = ?,"
            " reviewed_at = ?, n_reviewers = ?, conflict = ?, text = ?,"
            f" disagrees = {disagrees} WHERE id = ?",
            (
                *(state[k] for k in _STATE_COLUMNS),
                state["label"],
                sample_id,
            ),
        )
        if state["text"] == text:
            return False
        if fts:  # (SQLite's external-content index: the old entry goes with its old text)
            dialect.search_index_replace(conn, sample_id, text, state["text"])
        return True

    def rebuild_state(self) -> None:
        """Recompute every sample's current state from the event log alone."""
        self._write(self.rebuild_from_log)

    @classmethod
    def rebuild_from_log(cls, conn: Connection) -> None:
        """:meth:`rebuild_state` inside the caller's transaction (a restore uses it on a
        database that is not open as a Workspace yet).

        Set-based: rows without events are reset where they are not in the imported state
        already, and rows with events get their state from :func:`derive_state` in batches,
        written only where it differs. Rewriting every row cost minutes at a million rows (on
        PostgreSQL each rewritten row adds an entry to every index, the text's trigram index
        included) although a consistent store changes none.
        """
        texts_changed = _reset_rows_without_events(conn)
        texts_changed |= _rederive_rows_with_events(conn)
        if texts_changed:
            # Texts changed (or were not what the log says): the search index and the
            # neighbor graph follow the texts.
            dialect_of(conn).search_index_rebuild(conn)
            conn.execute("DELETE FROM knn_graphs")

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

    def _undo(self, conn: Connection, reviewer: str) -> list[int]:
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
            "SELECT sample_id, action, old_label, old_excluded, old_text FROM label_events"
            " WHERE batch_id = ? ORDER BY id DESC",
            (batch,),
        ).fetchall()
        # A batch touches each sample once; restoring in reverse order handles repeats anyway.
        # A text event's undo restores the text and keeps the current label; a label event's
        # undo restores the label and exclusion and keeps the current text.
        restore: dict[int, tuple[str | None, int | None, str | None]] = {}
        for e in events:
            if e["action"] in TEXT_ACTIONS:
                restore[int(e["sample_id"])] = (None, None, e["old_text"])
            else:
                restore[int(e["sample_id"])] = (e["old_label"], int(e["old_excluded"]), None)
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


# The derived columns _refresh_state writes, in its UPDATE's order.
_STATE_COLUMNS = (
    "label",
    "excluded",
    "reviewed",
    "reviewer",
    "reviewed_at",
    "n_reviewers",
    "conflict",
    "text",
)
# What rebuild_state writes: the derived columns, then whether the latest analysis disagrees.
_REBUILT_COLUMNS = (*_STATE_COLUMNS, "disagrees")
_TEXT = _REBUILT_COLUMNS.index("text")


# Samples whose events rebuild_state reads in one query (the events of up to this many rows).
_REBUILD_SAMPLES = 5_000
# Where samples hold no event: the rows rebuild_state resets to their imported state.
_NO_EVENTS = "NOT EXISTS (SELECT 1 FROM label_events e WHERE e.sample_id = samples.id)"
# A row with events, its stored state and its events, oldest first (rebuild_state).
_ROW_EVENTS_SQL = (
    "SELECT s.id, s.given_label, s.given_text, s.predicted_label,"
    " s.label, s.excluded, s.reviewed, s.reviewer, s.reviewed_at, s.n_reviewers, s.conflict,"
    " s.text, s.disagrees, e.action, e.new_label, e.new_excluded, e.reviewer, e.created_at,"
    " e.new_text,"
    " EXISTS (SELECT 1 FROM label_events u WHERE u.undoes_batch = e.batch_id) AS undone"
    " FROM label_events e JOIN samples s ON s.id = e.sample_id"
    " WHERE e.sample_id BETWEEN ? AND ? ORDER BY e.sample_id, e.id"
)
_EVENT_KEYS = ("action", "new_label", "new_excluded", "reviewer", "created_at", "new_text")


def _reset_rows_without_events(conn: Connection) -> bool:
    """Put the rows that have no event back in their imported state, touching only those not
    in it already; returns whether any text changed."""
    disagrees = dialect_of(conn).as_int(
        "predicted_label IS NOT NULL AND predicted_label != given_label"
    )
    repaired = conn.execute(
        f"SELECT COUNT(*) FROM samples WHERE text != given_text AND {_NO_EVENTS}"
    ).fetchone()[0]
    conn.execute(
        "UPDATE samples SET label = given_label, excluded = 0, reviewed = 0,"
        " reviewer = NULL, reviewed_at = NULL, n_reviewers = 0, conflict = 0,"
        f" text = given_text, disagrees = {disagrees} WHERE {_NO_EVENTS} AND ("
        "label != given_label OR excluded != 0 OR reviewed != 0 OR reviewer IS NOT NULL"
        " OR reviewed_at IS NOT NULL OR n_reviewers != 0 OR conflict != 0"
        f" OR text != given_text OR disagrees != {disagrees})"
    )
    return int(repaired) > 0


def _rederive_rows_with_events(conn: Connection) -> bool:
    """Recompute the state of every row with events from its events (:func:`derive_state`,
    as :meth:`LabelsMixin._refresh_state` does for one row) and write the rows whose stored
    state differs, in one bulk update; returns whether any text changed."""
    ids = sorted(int(r[0]) for r in conn.execute("SELECT DISTINCT sample_id FROM label_events"))
    changed: list[tuple] = []
    texts_changed = False
    for part in chunks(ids, _REBUILD_SAMPLES):
        rows = conn.execute(_ROW_EVENTS_SQL, (part[0], part[-1])).fetchall()
        for sample_id, group in groupby(rows, key=lambda r: r[0]):
            stored, derived = _stored_and_derived(list(group))
            if derived != stored:
                changed.append((*derived, sample_id))
                texts_changed |= derived[_TEXT] != stored[_TEXT]
    if changed:
        dialect_of(conn).update_many(conn, "samples", "id", _REBUILT_COLUMNS, changed)
    return texts_changed


def _stored_and_derived(rows: list[Any]) -> tuple[tuple, tuple]:
    """One sample's :data:`_REBUILT_COLUMNS` as stored and as its events say (``rows``: its
    :data:`_ROW_EVENTS_SQL` rows)."""
    first = rows[0]
    given_label, given_text, predicted = first[1], first[2], first[3]
    stored = tuple(first[4:13])
    events = [{**dict(zip(_EVENT_KEYS, r[13:19], strict=True)), "undone": r[19]} for r in rows]
    state = derive_state(given_label, events, given_text=given_text)
    disagrees = int(predicted is not None and predicted != state["label"])
    return stored, (*(state[k] for k in _STATE_COLUMNS), disagrees)


def derive_state(
    given_label: str, events: list[dict[str, Any]], *, given_text: str | None = None
) -> dict[str, Any]:
    """A sample's current state from its events, oldest first.

    The last event sets the label and exclusion (an ``undo`` event restores the earlier ones;
    a text event carries them unchanged). The text is the ``new_text`` of the last event that
    has one (a ``repair_text`` or its undo), else ``given_text``. A sample is reviewed while it
    has a label or exclusion action that was not undone (a text repair is not a label review);
    its reviewer is the one of the latest such action. It is *conflicting* when, since the last
    ``resolve``, reviewers' latest labels differ: the later one wins, and the sample is marked
    for a look.

    >>> derive_state("pos", [])["label"]
    'pos'
    >>> ev = lambda who, lab: {"action": "relabel", "new_label": lab, "new_excluded": 0,
    ...                        "reviewer": who, "created_at": "t", "undone": 0}
    >>> s = derive_state("pos", [ev("ana", "neg"), ev("bo", "pos")])
    >>> s["label"], s["conflict"], s["n_reviewers"]
    ('pos', 1, 2)
    """
    texts = [e["new_text"] for e in events if e.get("new_text") is not None]
    text = texts[-1] if texts else given_text
    if not events:
        return {
            "label": given_label,
            "excluded": 0,
            "reviewed": 0,
            "reviewer": None,
            "reviewed_at": None,
            "n_reviewers": 0,
            "conflict": 0,
            "text": text,
        }
    last = events[-1]
    effective = [
        e
        for e in events
        if e["action"] != "undo" and e["action"] not in TEXT_ACTIONS and not e["undone"]
    ]
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
        "text": text,
    }
