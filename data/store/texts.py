"""Text repairs as events: accept proposed texts, list what was repaired.

A repair never changes a text silently: each accepted text is one ``repair_text`` event in the
log (:mod:`data.store.labels` derives the current ``text`` from it, the imported one stays in
``given_text``), and :meth:`~data.store.labels.LabelsMixin.undo` reverts it like any action.
The proposals themselves come from :mod:`curation.repair`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import pandas as pd

from data.store.base import StoreError, check_reviewer, chunks


class TextsMixin:
    def repair_texts(
        self,
        repairs: Iterable[tuple[int, str]],
        *,
        reviewer: str,
        expected: dict[int, str] | None = None,
    ) -> list[int]:
        """Set the texts of samples, as ONE batch of ``repair_text`` events (one undo reverts it).

        Parameters
        ----------
        repairs
            ``(sample_id, new_text)`` pairs. A pair whose text is already the current one is
            skipped (no event).
        reviewer
            Who accepted the repairs.
        expected
            Optionally ``{sample_id: text}``: the current text each proposal was made from.
            Rows whose text has changed since (another reviewer repaired or undid it) are
            skipped, so a stale proposal never overwrites a newer text.

        Returns
        -------
        list of int
            The new event ids, once committed (empty when nothing changed).
        """
        reviewer = check_reviewer(reviewer)
        wanted: dict[int, str] = {}
        for sample_id, text in repairs:
            if not isinstance(text, str):
                raise ValueError(
                    f"The repaired text of sample {sample_id} must be a string, got "
                    f"{type(text).__name__}."
                )
            if not text.strip():
                raise ValueError(f"The repaired text of sample {sample_id} is empty.")
            wanted[int(sample_id)] = text

        def write(conn) -> list[int]:
            current: dict[int, str] = {}
            for part in chunks(list(wanted), 900):
                marks = ",".join("?" * len(part))
                current.update(
                    (int(r[0]), r[1])
                    for r in conn.execute(
                        f"SELECT id, text FROM samples WHERE id IN ({marks})", part
                    )
                )
            missing = [sid for sid in wanted if sid not in current]
            if missing:
                raise StoreError(f"No sample with id {missing[0]}; nothing was changed.")
            actions = [
                (sid, "repair_text", text)
                for sid, text in wanted.items()
                if current[sid] != text
                and (expected is None or sid not in expected or expected[sid] == current[sid])
            ]
            if not actions:
                return []
            return self._append_events(conn, actions, reviewer, uuid.uuid4().hex, None)

        event_ids = self._write(write)
        self._backup_if_due(len(event_ids))
        return event_ids

    def repaired_texts(self) -> pd.DataFrame:
        """Samples whose current text differs from the imported one.

        Columns: sample_id, ext_id, given_text, text, in id order.
        """
        return self._frame(
            "SELECT id AS sample_id, ext_id, given_text, text FROM samples"
            " WHERE text != given_text ORDER BY id"
        )

    def current_texts(self) -> pd.DataFrame:
        """Every sample's id, ext_id, current text and ``encoding_fixed`` (what repair
        proposals are made from), in id order."""
        df = self._frame(
            "SELECT id AS sample_id, ext_id, text, encoding_fixed FROM samples ORDER BY id"
        )
        df["encoding_fixed"] = df["encoding_fixed"].astype(bool)
        return df
