"""The database schema (one version; `Workspace.create` writes it), and what opening an
older workspace changes (:data:`V3_SAMPLE_COLUMNS`.., :data:`V4_RENAMED_COLUMNS`,
:data:`V5_SAMPLE_COLUMNS`, :data:`V5_EVENT_COLUMNS`, :data:`V6_JOB_COLUMNS`,
:data:`V7_TABLES` / :data:`PG_V7_TABLES`; the steps themselves are in
:mod:`data.store.migrate`)."""

# Added in schema version 3 (issue types beyond label errors, the neighbour graph); kept apart
# so that opening a version-2 workspace can add exactly these.
V3_SAMPLE_COLUMNS = (
    ("is_outlier", "INTEGER NOT NULL DEFAULT 0"),
    ("outlier_score", "REAL"),
    ("dup_group", "INTEGER"),
    ("dup_conflict", "INTEGER NOT NULL DEFAULT 0"),
)
V3_RESULT_COLUMNS = (
    ("is_outlier", "INTEGER"),
    ("outlier_score", "REAL"),
    ("dup_group", "INTEGER"),
    ("dup_conflict", "INTEGER"),
    ("consensus_label", "TEXT"),
    ("consensus_quality", "REAL"),
)
V3_INDEXES = """
CREATE INDEX IF NOT EXISTS samples_outlier ON samples(outlier_score) WHERE is_outlier = 1;
CREATE INDEX IF NOT EXISTS samples_dup ON samples(dup_group, id) WHERE dup_group IS NOT NULL;
CREATE INDEX IF NOT EXISTS samples_dup_conflict ON samples(dup_conflict) WHERE dup_conflict = 1;
"""
# Versions 3 to 6 kept the neighbour graph in this table; version 7 moves it into files
# (knn_graphs), so only an upgrade from version 2 still creates it, to be moved at once.
V3_TABLES = (
    V3_INDEXES
    + """-- The k nearest neighbours of every row in one encoder's embedding space. It depends on the
-- texts only (never on labels), so it is computed once per encoder and reused by every
-- re-analysis and by the review card.
CREATE TABLE IF NOT EXISTS knn (
    model_key TEXT NOT NULL,
    sample_id INTEGER NOT NULL,
    -- the row's k neighbours, nearest first: int64 sample ids and float32 cosine distances
    neighbor_ids BLOB NOT NULL,
    distances BLOB NOT NULL,
    PRIMARY KEY (model_key, sample_id)
) WITHOUT ROWID;
"""
)

# Schema version 4 speaks the project's one vocabulary (README, "Words"): columns named
# otherwise before are renamed in place when a version-3 workspace is opened.
V4_RENAMED_COLUMNS = (
    ("samples", "original_label", "given_label"),
    ("analysis_results", "label_used", "analyzed_label"),
    ("analysis_results", "given_prob", "analyzed_prob"),
)

# Schema version 5: text repair as reviewable events. ``samples.given_text`` keeps the text as
# imported; ``samples.text`` becomes the current text, derived from the log like the label.
# ``label_events`` gains the text before and after a ``repair_text`` event (and its undo);
# NULL for events that leave the text alone. Opening a version-4 workspace adds them (and
# fills ``given_text`` from ``text``: nothing was repaired before version 5).
V5_SAMPLE_COLUMNS = (("given_text", "TEXT NOT NULL DEFAULT ''"),)
V5_EVENT_COLUMNS = (("old_text", "TEXT"), ("new_text", "TEXT"))

# Schema version 6: workers claim queued jobs (jobs/worker.py). ``worker`` is who claimed a job
# ("host:pid"), ``heartbeat_at`` when it last said it is alive (ISO 8601 UTC, as ``now()``),
# ``attempts`` how many times it was claimed. Opening a version-5 workspace adds them.
V6_JOB_COLUMNS = (
    ("worker", "TEXT"),
    ("heartbeat_at", "TEXT"),
    ("attempts", "INTEGER NOT NULL DEFAULT 0"),
)

# Schema version 7: the embedding cache and the neighbour graphs are files in the workspace
# folder (``artifacts/``, under SECOND_LOOK_HOME, shared by replicas and workers); the database
# holds what each file is (its path relative to the folder, size and SHA-256) and, for the
# cache, which row of which file holds a text's vector. A file that is missing or differs from
# its record is never used (data/store/vectors.py). Version 6's ``embeddings`` and ``knn``
# tables are moved into files and dropped by the upgrade (data/store/migrate.py).
_V7_TABLES = """
-- one immutable .npy file of float32 vectors (n_rows x dimensions) of one encoder
CREATE TABLE IF NOT EXISTS embedding_segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_key CTEXT NOT NULL,
    path CTEXT NOT NULL UNIQUE,
    n_rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 CTEXT NOT NULL,
    created_at CTEXT NOT NULL
);
-- where a text's vector is: row segment_row of segment segment_id
CREATE TABLE IF NOT EXISTS embedding_index (
    model_key CTEXT NOT NULL,
    text_hash CTEXT NOT NULL,
    segment_id INTEGER NOT NULL REFERENCES embedding_segments(id),
    segment_row INTEGER NOT NULL,
    PRIMARY KEY (model_key, text_hash)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS embedding_index_segment ON embedding_index(segment_id);
-- one encoder's neighbour graph: row i of both files is sample id i, nearest first
-- (int32 or int64 sample ids, float32 cosine distances)
CREATE TABLE IF NOT EXISTS knn_graphs (
    model_key CTEXT PRIMARY KEY,
    n_rows INTEGER NOT NULL,
    k INTEGER NOT NULL,
    ids_path CTEXT NOT NULL,
    ids_bytes INTEGER NOT NULL,
    ids_sha256 CTEXT NOT NULL,
    distances_path CTEXT NOT NULL,
    distances_bytes INTEGER NOT NULL,
    distances_sha256 CTEXT NOT NULL,
    created_at CTEXT NOT NULL
);
"""
V7_TABLES = _V7_TABLES.replace("CTEXT", "TEXT")
PG_V7_TABLES = (
    _V7_TABLES.replace("CTEXT", 'TEXT COLLATE "C"')
    .replace(
        "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    )
    .replace("segment_id INTEGER", "segment_id BIGINT")
    .replace("bytes INTEGER", "bytes BIGINT")
    .replace(") WITHOUT ROWID;", ");")
)

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    ext_id TEXT NOT NULL UNIQUE,
    -- the current text, derived from label_events like the label (repair_text events); the
    -- text as imported is given_text (schema version 5, the last column)
    text TEXT NOT NULL,
    given_label TEXT NOT NULL,
    split TEXT NOT NULL,
    meta TEXT,
    encoding_fixed INTEGER NOT NULL DEFAULT 0,
    -- derived from label_events (rebuild_state recomputes these from the log)
    label TEXT NOT NULL,
    excluded INTEGER NOT NULL DEFAULT 0,
    reviewed INTEGER NOT NULL DEFAULT 0,
    reviewer TEXT,
    reviewed_at TEXT,
    n_reviewers INTEGER NOT NULL DEFAULT 0,
    conflict INTEGER NOT NULL DEFAULT 0,
    -- in the double-review set (Workspace.set_overlap)
    overlap INTEGER NOT NULL DEFAULT 0,
    -- a fixed random key per row: the "random" review order, and the overlap draw
    rand INTEGER NOT NULL DEFAULT 0,
    -- the latest analysis, copied here so the review queue is one indexed table at 1M rows
    predicted_label TEXT,
    predicted_prob REAL,
    label_quality REAL,
    is_label_issue INTEGER NOT NULL DEFAULT 0,
    disagrees INTEGER NOT NULL DEFAULT 0,
    -- the latest analysis's other issue types (schema version 3)
    is_outlier INTEGER NOT NULL DEFAULT 0,
    outlier_score REAL,
    dup_group INTEGER,
    dup_conflict INTEGER NOT NULL DEFAULT 0,
    given_text TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS samples_label ON samples(label, label_quality);
CREATE INDEX IF NOT EXISTS samples_split ON samples(split, label_quality);
CREATE INDEX IF NOT EXISTS samples_quality ON samples(label_quality);
CREATE INDEX IF NOT EXISTS samples_flagged ON samples(is_label_issue, label_quality);
CREATE INDEX IF NOT EXISTS samples_reviewed ON samples(reviewed, label_quality);
CREATE INDEX IF NOT EXISTS samples_disagrees ON samples(disagrees, label_quality);
CREATE INDEX IF NOT EXISTS samples_prob ON samples(predicted_prob);
CREATE INDEX IF NOT EXISTS samples_rand ON samples(rand);
CREATE INDEX IF NOT EXISTS samples_conflict ON samples(conflict) WHERE conflict = 1;
{V3_INDEXES}{V7_TABLES}-- Substring search over the current text without scanning every row (trigram index; a
-- text repair updates the row's entry).
CREATE VIRTUAL TABLE IF NOT EXISTS samples_fts USING fts5(
    text, content='samples', content_rowid='id', tokenize='trigram'
);
CREATE TABLE IF NOT EXISTS label_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sample_id INTEGER NOT NULL REFERENCES samples(id),
    -- old_text, new_text (schema version 5): the text before and after a repair_text event
    -- or its undo; NULL for the events that leave the text alone
    action TEXT NOT NULL,
    old_label TEXT NOT NULL,
    new_label TEXT NOT NULL,
    old_excluded INTEGER NOT NULL,
    new_excluded INTEGER NOT NULL,
    reviewer TEXT NOT NULL,
    created_at TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    undoes_batch TEXT,
    old_text TEXT,
    new_text TEXT
);
CREATE INDEX IF NOT EXISTS events_sample ON label_events(sample_id, id);
CREATE INDEX IF NOT EXISTS events_reviewer ON label_events(reviewer, id);
CREATE INDEX IF NOT EXISTS events_batch ON label_events(batch_id);
CREATE INDEX IF NOT EXISTS events_undoes ON label_events(undoes_batch) WHERE undoes_batch IS NOT NULL;
CREATE TABLE IF NOT EXISTS analyses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    method TEXT NOT NULL,
    settings TEXT NOT NULL,
    label_version INTEGER NOT NULL,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS analysis_results (
    analysis_id INTEGER NOT NULL REFERENCES analyses(id),
    sample_id INTEGER NOT NULL REFERENCES samples(id),
    analyzed_label TEXT NOT NULL,
    predicted_label TEXT NOT NULL,
    predicted_prob REAL NOT NULL,
    analyzed_prob REAL NOT NULL,
    label_quality REAL NOT NULL,
    is_label_issue INTEGER NOT NULL,
    {V3_RESULT_COLUMNS}
    PRIMARY KEY (analysis_id, sample_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS results_quality ON analysis_results(analysis_id, label_quality);
-- worker, heartbeat_at, attempts (the last columns): schema version 6, V6_JOB_COLUMNS
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    params TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress TEXT,
    result TEXT,
    error TEXT,
    worker TEXT,
    heartbeat_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER REFERENCES jobs(id),
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    data TEXT NOT NULL,
    metrics TEXT,
    history TEXT,
    progress TEXT,
    model_dir TEXT,
    created_at TEXT NOT NULL,
    finished_at TEXT
);
""".replace("{V3_INDEXES}", V3_INDEXES)
    .replace("{V7_TABLES}", V7_TABLES)
    .replace(
        "{V3_RESULT_COLUMNS}", "".join(f"{name} {kind},\n    " for name, kind in V3_RESULT_COLUMNS)
    )
)

# The same schema (version 7) for a workspace that lives in a PostgreSQL schema. The columns are
# SQLite's, one for one (tests/test_store_backends.py compares them): flags stay INTEGER 0/1 so
# that the store's statements are the same on both; REAL is DOUBLE PRECISION (SQLite's REAL is
# 8 bytes); ids are BIGINT, AUTOINCREMENT an identity (never reused); BLOB is BYTEA. Names,
# labels, reviewers and times compare and sort byte by byte (COLLATE "C"), as in SQLite; the
# texts keep the database's collation, so that ILIKE folds the case of every script. There is
# no samples_fts: the substring search uses a pg_trgm GIN index on samples.text
# (PG_SEARCH_INDEX, made after the import's COPY when the extension is available).
PG_SCHEMA = (
    """
CREATE TABLE meta (key CTEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE samples (
    id BIGINT PRIMARY KEY,
    ext_id CTEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    given_label CTEXT NOT NULL,
    split CTEXT NOT NULL,
    meta TEXT,
    encoding_fixed INTEGER NOT NULL DEFAULT 0,
    label CTEXT NOT NULL,
    excluded INTEGER NOT NULL DEFAULT 0,
    reviewed INTEGER NOT NULL DEFAULT 0,
    reviewer CTEXT,
    reviewed_at CTEXT,
    n_reviewers INTEGER NOT NULL DEFAULT 0,
    conflict INTEGER NOT NULL DEFAULT 0,
    overlap INTEGER NOT NULL DEFAULT 0,
    rand BIGINT NOT NULL DEFAULT 0,
    predicted_label CTEXT,
    predicted_prob DOUBLE PRECISION,
    label_quality DOUBLE PRECISION,
    is_label_issue INTEGER NOT NULL DEFAULT 0,
    disagrees INTEGER NOT NULL DEFAULT 0,
    is_outlier INTEGER NOT NULL DEFAULT 0,
    outlier_score DOUBLE PRECISION,
    dup_group BIGINT,
    dup_conflict INTEGER NOT NULL DEFAULT 0,
    given_text TEXT NOT NULL DEFAULT ''
);
CREATE INDEX samples_label ON samples(label, label_quality);
CREATE INDEX samples_split ON samples(split, label_quality);
CREATE INDEX samples_quality ON samples(label_quality);
CREATE INDEX samples_flagged ON samples(is_label_issue, label_quality);
CREATE INDEX samples_reviewed ON samples(reviewed, label_quality);
CREATE INDEX samples_disagrees ON samples(disagrees, label_quality);
CREATE INDEX samples_prob ON samples(predicted_prob);
CREATE INDEX samples_rand ON samples(rand);
CREATE INDEX samples_conflict ON samples(conflict) WHERE conflict = 1;
CREATE INDEX samples_outlier ON samples(outlier_score) WHERE is_outlier = 1;
CREATE INDEX samples_dup ON samples(dup_group, id) WHERE dup_group IS NOT NULL;
CREATE INDEX samples_dup_conflict ON samples(dup_conflict) WHERE dup_conflict = 1;
CREATE TABLE label_events (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    sample_id BIGINT NOT NULL REFERENCES samples(id),
    action CTEXT NOT NULL,
    old_label CTEXT NOT NULL,
    new_label CTEXT NOT NULL,
    old_excluded INTEGER NOT NULL,
    new_excluded INTEGER NOT NULL,
    reviewer CTEXT NOT NULL,
    created_at CTEXT NOT NULL,
    batch_id CTEXT NOT NULL,
    undoes_batch CTEXT,
    old_text TEXT,
    new_text TEXT
);
CREATE INDEX events_sample ON label_events(sample_id, id);
CREATE INDEX events_reviewer ON label_events(reviewer, id);
CREATE INDEX events_batch ON label_events(batch_id);
CREATE INDEX events_undoes ON label_events(undoes_batch) WHERE undoes_batch IS NOT NULL;
CREATE TABLE analyses (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    created_at CTEXT NOT NULL,
    method CTEXT NOT NULL,
    settings TEXT NOT NULL,
    label_version BIGINT NOT NULL,
    summary TEXT
);
CREATE TABLE analysis_results (
    analysis_id BIGINT NOT NULL REFERENCES analyses(id),
    sample_id BIGINT NOT NULL REFERENCES samples(id),
    analyzed_label CTEXT NOT NULL,
    predicted_label CTEXT NOT NULL,
    predicted_prob DOUBLE PRECISION NOT NULL,
    analyzed_prob DOUBLE PRECISION NOT NULL,
    label_quality DOUBLE PRECISION NOT NULL,
    is_label_issue INTEGER NOT NULL,
    is_outlier INTEGER,
    outlier_score DOUBLE PRECISION,
    dup_group BIGINT,
    dup_conflict INTEGER,
    consensus_label CTEXT,
    consensus_quality DOUBLE PRECISION,
    PRIMARY KEY (analysis_id, sample_id)
);
CREATE INDEX results_quality ON analysis_results(analysis_id, label_quality);
CREATE TABLE jobs (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    kind CTEXT NOT NULL,
    status CTEXT NOT NULL,
    params TEXT NOT NULL,
    created_at CTEXT NOT NULL,
    started_at CTEXT,
    finished_at CTEXT,
    pid BIGINT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress TEXT,
    result TEXT,
    error TEXT,
    worker CTEXT,
    heartbeat_at CTEXT,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE runs (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    job_id BIGINT REFERENCES jobs(id),
    name TEXT NOT NULL,
    status CTEXT NOT NULL,
    config TEXT NOT NULL,
    data TEXT NOT NULL,
    metrics TEXT,
    history TEXT,
    progress TEXT,
    model_dir TEXT,
    created_at CTEXT NOT NULL,
    finished_at CTEXT
);
""".replace("CTEXT", 'TEXT COLLATE "C"')
    + PG_V7_TABLES
)

# The substring search's index ({ops}: pg_trgm's operator class, qualified by its schema).
PG_SEARCH_INDEX = "CREATE INDEX samples_text_trgm ON samples USING gin (text {ops})"
