-- Times are INTEGER Unix nanoseconds (NULL for the zero time): they sort, and compare cheaply.
-- JSON columns hold encoding/json output of the Go types in internal/task.

CREATE TABLE tasks (
    id         TEXT PRIMARY KEY,
    session    TEXT NOT NULL,
    parent     TEXT NOT NULL DEFAULT '',
    prompt     TEXT NOT NULL,
    status     TEXT NOT NULL,
    plan       TEXT NOT NULL,          -- JSON task.Plan
    summary    TEXT NOT NULL,
    error      TEXT NOT NULL,
    model      TEXT NOT NULL,
    approvals  TEXT NOT NULL,
    grants     TEXT NOT NULL,          -- JSON []task.Grant
    outputs    TEXT NOT NULL,
    turns      INTEGER NOT NULL,
    usage      TEXT NOT NULL,          -- JSON task.Usage
    created_at INTEGER,
    updated_at INTEGER
);
CREATE INDEX tasks_created ON tasks (created_at);
CREATE INDEX tasks_parent ON tasks (parent, created_at);
CREATE INDEX tasks_status ON tasks (status, created_at);

CREATE TABLE events (
    task    TEXT NOT NULL REFERENCES tasks (id),
    seq     INTEGER NOT NULL,
    time    INTEGER,
    session TEXT NOT NULL,
    type    TEXT NOT NULL,
    data    BLOB,                      -- JSON, as given
    PRIMARY KEY (task, seq)
) WITHOUT ROWID;

-- ord is the rowid: an upsert keeps it, so it records the order calls were first written.
CREATE TABLE tool_calls (
    ord         INTEGER PRIMARY KEY,
    task        TEXT NOT NULL REFERENCES tasks (id),
    id          TEXT NOT NULL,
    turn        INTEGER NOT NULL,
    tool        TEXT NOT NULL,
    input       TEXT NOT NULL,
    effect      TEXT NOT NULL,
    decision    TEXT NOT NULL,
    status      TEXT NOT NULL,
    result      TEXT NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    UNIQUE (task, id)
);

CREATE TABLE approvals (
    id          TEXT PRIMARY KEY,
    task        TEXT NOT NULL REFERENCES tasks (id),
    call_id     TEXT NOT NULL,
    tool        TEXT NOT NULL,
    effect      TEXT NOT NULL,
    summary     TEXT NOT NULL,
    provenance  TEXT NOT NULL,
    status      TEXT NOT NULL,
    scope       TEXT NOT NULL,
    resolved_by TEXT NOT NULL,
    created_at  INTEGER,
    resolved_at INTEGER
);
CREATE INDEX approvals_task ON approvals (task, created_at);
CREATE INDEX approvals_pending ON approvals (created_at) WHERE status = 'pending';

-- The audit chain. seq is the rowid; task is copied out of the body for filtering and is not
-- covered by the hash (the body is).
CREATE TABLE audit (
    seq  INTEGER PRIMARY KEY,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL,
    task TEXT NOT NULL DEFAULT '',
    body BLOB NOT NULL
);
CREATE INDEX audit_task ON audit (task, seq);

-- The chain's head as last committed, kept apart from the records so that removing entries
-- from the end is detected. Commit appends after this head, never after max(audit.seq).
CREATE TABLE audit_anchor (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_anchor (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
