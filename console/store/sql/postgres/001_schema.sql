-- The PostgreSQL adapter's tables: those of the SQLite schema (console/store/schema.py, all its
-- migrations), with PostgreSQL's types, plus the change counter and the lease's generation.
-- JSON fields are stored as the text the engine encoded (reads decode it), as on SQLite.

CREATE TABLE processes (
    id                  TEXT PRIMARY KEY,
    kind                TEXT NOT NULL,
    priority            TEXT NOT NULL,
    spec                TEXT NOT NULL,
    resources           TEXT NOT NULL,
    max_attempts        BIGINT NOT NULL,
    state               TEXT NOT NULL,
    reason              TEXT,
    progress            DOUBLE PRECISION NOT NULL DEFAULT 0,
    attempt             BIGINT NOT NULL DEFAULT 0,
    failures            BIGINT NOT NULL DEFAULT 0,
    interruption        TEXT,
    checkpoint          TEXT,
    checkpoint_seq      BIGINT NOT NULL DEFAULT 0,
    created_at          DOUBLE PRECISION NOT NULL,
    updated_at          DOUBLE PRECISION NOT NULL,
    started_at          DOUBLE PRECISION,
    finished_at         DOUBLE PRECISION,
    resumes_total       BIGINT NOT NULL DEFAULT 0,
    resumes_succeeded   BIGINT NOT NULL DEFAULT 0,
    resumes_failed      BIGINT NOT NULL DEFAULT 0,
    resume_seconds      DOUBLE PRECISION NOT NULL DEFAULT 0,
    interruptions       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX processes_created ON processes (created_at, id);

CREATE TABLE dependencies (
    dependent                   TEXT NOT NULL REFERENCES processes (id) ON DELETE CASCADE,
    dependency                  TEXT NOT NULL REFERENCES processes (id) ON DELETE CASCADE,
    type                        TEXT NOT NULL,
    required_completion_percent DOUBLE PRECISION NOT NULL,
    timeout_minutes             DOUBLE PRECISION,
    PRIMARY KEY (dependent, dependency)
);
CREATE INDEX dependencies_dependency ON dependencies (dependency);

CREATE TABLE resume_requests (
    process_id      TEXT PRIMARY KEY REFERENCES processes (id) ON DELETE CASCADE,
    priority        TEXT NOT NULL,
    requested_at    DOUBLE PRECISION NOT NULL,
    seq             BIGINT NOT NULL,
    source          TEXT NOT NULL,
    not_before      DOUBLE PRECISION,
    force_immediate BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE checkpoints (
    process_id  TEXT NOT NULL REFERENCES processes (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    progress    DOUBLE PRECISION NOT NULL,
    data        TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (process_id, seq)
);

-- Numbered by the engine in time order: the number answers the questions asked of their time.
CREATE TABLE events (
    seq         BIGINT PRIMARY KEY,
    ts          DOUBLE PRECISION NOT NULL,
    process_id  TEXT,
    type        TEXT NOT NULL,
    message     TEXT NOT NULL DEFAULT '',
    data        TEXT
);
CREATE INDEX events_process ON events (process_id, seq);

CREATE TABLE logs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    process_id  TEXT NOT NULL,
    ts          DOUBLE PRECISION NOT NULL,
    line        TEXT NOT NULL
);
CREATE INDEX logs_process ON logs (process_id, id);
CREATE INDEX logs_ts ON logs (ts);

CREATE TABLE pools (
    name    TEXT PRIMARY KEY,
    size    BIGINT NOT NULL
);

-- Who dispatches this database: one row, there from the start. A free lease has no token.
-- `generation` is raised each time the lease passes to another token, never lowered (it
-- outlives a release): the fencing number a future write check compares.
CREATE TABLE lease (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    token         TEXT,
    pid           BIGINT,
    host          TEXT,
    role          TEXT,
    acquired_at   DOUBLE PRECISION,
    heartbeat_at  DOUBLE PRECISION,
    generation    BIGINT NOT NULL DEFAULT 0
);
INSERT INTO lease (id) VALUES (1);

CREATE TABLE commands (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    status      TEXT NOT NULL DEFAULT 'new',
    result      TEXT,
    handled_at  DOUBLE PRECISION
);
CREATE INDEX commands_new ON commands (id) WHERE status = 'new';

CREATE TABLE calls (
    id          TEXT PRIMARY KEY,
    created_at  DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);
CREATE INDEX calls_updated ON calls (updated_at);

CREATE TABLE turns (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id     TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    role        TEXT NOT NULL,
    text        TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    source      TEXT,
    UNIQUE (call_id, seq)
);

CREATE TABLE voice_requests (
    id          TEXT PRIMARY KEY,
    call_id     TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    process_id  TEXT NOT NULL,
    input_text  TEXT,
    audio_path  TEXT,
    transcript  TEXT,
    reply       TEXT,
    speech_path TEXT,
    stage       TEXT NOT NULL,
    latency_ms  TEXT NOT NULL,
    usage       TEXT NOT NULL,
    model       TEXT,
    created_at  DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);
CREATE INDEX voice_requests_created ON voice_requests (created_at);
CREATE INDEX voice_requests_call ON voice_requests (call_id, created_at);

CREATE TABLE transfers (
    id              TEXT PRIMARY KEY,
    call_id         TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    process_id      TEXT NOT NULL,
    from_agent      TEXT NOT NULL,
    to_agent        TEXT NOT NULL,
    status          TEXT NOT NULL,
    summary         TEXT,
    summary_source  TEXT,
    reason          TEXT,
    created_at      DOUBLE PRECISION NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL,
    completed_at    DOUBLE PRECISION
);
CREATE INDEX transfers_created ON transfers (created_at);
CREATE INDEX transfers_status_created ON transfers (status, created_at);
CREATE INDEX transfers_call ON transfers (call_id);

-- Raised by every writing transaction: what change_marker() reads, so a reader on another
-- connection (or machine) learns that something was committed.
CREATE TABLE changes (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    n   BIGINT NOT NULL
);
INSERT INTO changes VALUES (1, 0);
