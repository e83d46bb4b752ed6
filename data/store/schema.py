"""The database schema, and the SQL that derives a sample's state from its label events."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    ext_id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    original_label TEXT NOT NULL,
    split TEXT NOT NULL,
    meta TEXT,
    encoding_fixed INTEGER NOT NULL DEFAULT 0,
    -- derived from label_events (rebuild_state recomputes these from the log)
    label TEXT NOT NULL,
    excluded INTEGER NOT NULL DEFAULT 0,
    reviewed INTEGER NOT NULL DEFAULT 0,
    reviewer TEXT,
    reviewed_at TEXT
);
CREATE INDEX IF NOT EXISTS samples_label ON samples(label);
CREATE INDEX IF NOT EXISTS samples_split ON samples(split);
CREATE TABLE IF NOT EXISTS label_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sample_id INTEGER NOT NULL REFERENCES samples(id),
    action TEXT NOT NULL,
    old_label TEXT NOT NULL,
    new_label TEXT NOT NULL,
    old_excluded INTEGER NOT NULL,
    new_excluded INTEGER NOT NULL,
    reviewer TEXT NOT NULL,
    created_at TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    undoes_batch TEXT
);
CREATE INDEX IF NOT EXISTS events_sample ON label_events(sample_id, id);
CREATE INDEX IF NOT EXISTS events_reviewer ON label_events(reviewer, id);
CREATE TABLE IF NOT EXISTS embeddings (
    model_key TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_key, text_hash)
) WITHOUT ROWID;
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
    label_used TEXT NOT NULL,
    predicted_label TEXT NOT NULL,
    predicted_prob REAL NOT NULL,
    given_prob REAL NOT NULL,
    label_quality REAL NOT NULL,
    is_label_issue INTEGER NOT NULL,
    PRIMARY KEY (analysis_id, sample_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS results_quality ON analysis_results(analysis_id, label_quality);
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
    error TEXT
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
"""


# A sample's state from its events: the last event decides label and exclusion; a sample counts
# as reviewed while it has an action that was not undone.
STATE_SQL = """
UPDATE samples AS s SET
    label = COALESCE(
        (SELECT new_label FROM label_events e WHERE e.sample_id = s.id ORDER BY e.id DESC LIMIT 1),
        s.original_label),
    excluded = COALESCE(
        (SELECT new_excluded FROM label_events e WHERE e.sample_id = s.id
         ORDER BY e.id DESC LIMIT 1), 0),
    reviewed = EXISTS (
        SELECT 1 FROM label_events e WHERE e.sample_id = s.id AND e.action != 'undo'
        AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes_batch = e.batch_id)),
    reviewer = (SELECT reviewer FROM label_events e WHERE e.sample_id = s.id AND e.action != 'undo'
        AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes_batch = e.batch_id)
        ORDER BY e.id DESC LIMIT 1),
    reviewed_at = (SELECT created_at FROM label_events e WHERE e.sample_id = s.id
        AND e.action != 'undo'
        AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes_batch = e.batch_id)
        ORDER BY e.id DESC LIMIT 1)
"""
