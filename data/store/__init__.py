"""The workspace store: the only module that speaks SQL.

A workspace is a folder holding ``store.sqlite`` (SQLite in WAL mode), under ``runs/`` the
models that training runs saved, and under ``artifacts/`` and ``cache/`` the large arrays
derived from the texts. The database holds:

- ``samples``: the imported rows (text, given label, split, metadata) plus a materialised
  view of each row's *current* state (label, excluded, reviewed) for fast paging;
- ``label_events``: an append-only log of every review action (label actions and text
  repairs, :mod:`data.store.texts`). The current state of a row (label, exclusion, text) is
  derived from it: :meth:`Workspace.rebuild_state` recomputes the materialised columns from the
  log alone, and every write updates both inside one transaction;
- ``embedding_segments`` / ``embedding_index``: a per-text cache of encoder outputs, so a
  re-analysis only refits the classifier. The vectors are files, ``artifacts/embeddings/``;
  the tables hold each file's size and SHA-256 and which row of which file is a text's vector;
- ``knn_graphs``: each encoder's neighbour graph, two files in ``artifacts/knn/``, with their
  checksums. A missing or changed artifact file is logged and recomputed, never used
  (:mod:`data.store.vectors`);
- ``analyses`` / ``analysis_results``: predicted probabilities and cleanlab scores, with the
  label version (the last event id) each analysis used;
- ``jobs`` / ``runs``: background work and training runs with their config, progress, metrics.

A damaged database (truncated, overwritten, failing ``PRAGMA quick_check``) is refused on open
with one :class:`DamagedWorkspace`; ``backups/`` holds consistent snapshots, and
:func:`restore_workspace` puts the newest back with every newer label event that can still be
read (see :mod:`data.store.backup`).

With ``SECOND_LOOK_DATABASE_URL`` set, :meth:`Workspace.create` puts a new workspace in a
schema of that PostgreSQL database instead (the folder then holds ``store.postgresql.json``
naming the schema, and still holds runs/, jobs/, artifacts/ and cache/); ``Workspace(folder)``
opens whichever its folder holds. Opening a workspace of an older schema version upgrades it in
place, in one transaction, on either backend (:mod:`data.store.migrate`). The same statements run on both: :mod:`data.store.dialect` holds
what the two spell differently. File backups and restores are SQLite's; a PostgreSQL workspace
refuses them and points to the database's own (pg_dump).

Every public write commits before it returns: when the UI says "saved", the change is on disk
(``synchronous=FULL``), so killing the process or closing the browser loses nothing acknowledged.

Example
-------
>>> ws = Workspace.create("/tmp/ws", prepared, name="reviews")          # doctest: +SKIP
>>> ws.relabel(3, "positive", reviewer="ana")                            # doctest: +SKIP
>>> ws.undo(reviewer="ana")                                              # doctest: +SKIP
"""

from data.store.backup import plan_restore, restore_workspace
from data.store.base import (
    ACTIONS,
    DB_NAME,
    JOB_KINDS,
    JOB_STATUSES,
    ORDERS,
    DamagedWorkspace,
    StoreError,
    diagnose,
    list_workspaces,
    now,
    slugify,
    workspace_problem,
    workspaces_root,
)
from data.store.workspace import Workspace

__all__ = [
    "ACTIONS",
    "DB_NAME",
    "JOB_KINDS",
    "JOB_STATUSES",
    "ORDERS",
    "DamagedWorkspace",
    "StoreError",
    "Workspace",
    "diagnose",
    "list_workspaces",
    "now",
    "plan_restore",
    "restore_workspace",
    "slugify",
    "workspace_problem",
    "workspaces_root",
]
