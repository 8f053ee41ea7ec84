-- Orchestration (issue 5): what a task needs to continue after a crash, steering, controls and
-- schedules. River's own tables are created by River's migrations in the same file.

-- extra holds the task's JSON options (depth, priority, max turns, tools, spawning call).
ALTER TABLE tasks ADD COLUMN extra TEXT NOT NULL DEFAULT '{}';

-- task_log is a task's append-only log of what its runner must replay to continue: messages
-- of the conversation and the guard's record of content. n counts from 1 per task.
CREATE TABLE task_log (
    task TEXT NOT NULL REFERENCES tasks (id),
    n    INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (task, n)
) WITHOUT ROWID;

-- task_state is a task's runner checkpoint (JSON), replaced at each step.
CREATE TABLE task_state (
    task TEXT PRIMARY KEY REFERENCES tasks (id),
    data BLOB NOT NULL
);

-- steers are messages a person sent to a running task, delivered in id order at turn
-- boundaries; delivered_at is set in the same transaction as the runner's checkpoint that
-- holds the message.
CREATE TABLE steers (
    id           INTEGER PRIMARY KEY,
    task         TEXT NOT NULL REFERENCES tasks (id),
    message      TEXT NOT NULL,
    created_at   INTEGER,
    delivered_at INTEGER
);
CREATE INDEX steers_task ON steers (task, id);

-- controls hold what a person asked of a task that its runner acts on at the next boundary:
-- 'pause' or 'cancel' ('' once acted on).
CREATE TABLE controls (
    task TEXT PRIMARY KEY REFERENCES tasks (id),
    want TEXT NOT NULL,
    at   INTEGER
);

CREATE TABLE schedules (
    id         TEXT PRIMARY KEY,
    spec       BLOB NOT NULL,           -- JSON, the queue's schedule request
    next       INTEGER,                 -- the next slot to fire
    last_slot  INTEGER,
    last_task  TEXT NOT NULL DEFAULT '',
    created_at INTEGER
);
CREATE INDEX schedules_next ON schedules (next);
