"""Schema and migrations, versioned with PRAGMA user_version.

Each migration is a script applied once, in order, inside one transaction. Add a new
entry at the end; never edit one that has shipped.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the orchestrator's tables
    """
    CREATE TABLE processes (
        id                  TEXT PRIMARY KEY,
        kind                TEXT NOT NULL,
        priority            TEXT NOT NULL,
        spec                TEXT NOT NULL,          -- JSON, kind-specific
        resources           TEXT NOT NULL,          -- JSON {pool: amount}
        max_attempts        INTEGER NOT NULL,
        state               TEXT NOT NULL,
        reason              TEXT,
        progress            REAL NOT NULL DEFAULT 0,
        attempt             INTEGER NOT NULL DEFAULT 0,
        failures            INTEGER NOT NULL DEFAULT 0,
        interruption        TEXT,                   -- JSON
        checkpoint          TEXT,                   -- JSON, latest checkpoint data
        checkpoint_seq      INTEGER NOT NULL DEFAULT 0,
        created_at          REAL NOT NULL,
        updated_at          REAL NOT NULL,
        started_at          REAL,
        finished_at         REAL,
        resumes_total       INTEGER NOT NULL DEFAULT 0,
        resumes_succeeded   INTEGER NOT NULL DEFAULT 0,
        resumes_failed      INTEGER NOT NULL DEFAULT 0,
        resume_seconds      REAL NOT NULL DEFAULT 0,
        interruptions       INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX processes_state ON processes(state);

    CREATE TABLE dependencies (
        dependent                   TEXT NOT NULL REFERENCES processes(id) ON DELETE CASCADE,
        dependency                  TEXT NOT NULL REFERENCES processes(id) ON DELETE CASCADE,
        type                        TEXT NOT NULL,
        required_completion_percent REAL NOT NULL,
        timeout_minutes             REAL,
        PRIMARY KEY (dependent, dependency)
    );
    CREATE INDEX dependencies_dependency ON dependencies(dependency);

    CREATE TABLE resume_requests (
        process_id      TEXT PRIMARY KEY REFERENCES processes(id) ON DELETE CASCADE,
        priority        TEXT NOT NULL,
        requested_at    REAL NOT NULL,
        seq             INTEGER NOT NULL,
        source          TEXT NOT NULL,
        not_before      REAL,
        force_immediate INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE checkpoints (
        process_id  TEXT NOT NULL REFERENCES processes(id) ON DELETE CASCADE,
        seq         INTEGER NOT NULL,
        progress    REAL NOT NULL,
        data        TEXT NOT NULL,
        created_at  REAL NOT NULL,
        PRIMARY KEY (process_id, seq)
    );

    CREATE TABLE events (
        seq         INTEGER PRIMARY KEY,
        ts          REAL NOT NULL,
        process_id  TEXT,
        type        TEXT NOT NULL,
        message     TEXT NOT NULL DEFAULT '',
        data        TEXT
    );
    CREATE INDEX events_ts ON events(ts);
    CREATE INDEX events_process ON events(process_id, seq);

    CREATE TABLE logs (
        id          INTEGER PRIMARY KEY,
        process_id  TEXT NOT NULL,
        ts          REAL NOT NULL,
        line        TEXT NOT NULL
    );
    CREATE INDEX logs_process ON logs(process_id, id);
    CREATE INDEX logs_ts ON logs(ts);

    CREATE TABLE pools (
        name    TEXT PRIMARY KEY,
        size    INTEGER NOT NULL
    );

    -- Who dispatches this database. One row at most.
    CREATE TABLE lease (
        id            INTEGER PRIMARY KEY CHECK (id = 1),
        token         TEXT NOT NULL,
        pid           INTEGER NOT NULL,
        host          TEXT NOT NULL,
        role          TEXT NOT NULL,
        acquired_at   REAL NOT NULL,
        heartbeat_at  REAL NOT NULL
    );

    -- Actions other processes (CLI, observer consoles) ask the owner to carry out.
    CREATE TABLE commands (
        id          INTEGER PRIMARY KEY,
        kind        TEXT NOT NULL,
        payload     TEXT NOT NULL,
        created_at  REAL NOT NULL,
        status      TEXT NOT NULL DEFAULT 'new',   -- new | done | error
        result      TEXT,
        handled_at  REAL
    );
    CREATE INDEX commands_new ON commands(status) WHERE status = 'new';
    """,
    # 2: calls, their turns, voice requests and warm transfers
    """
    CREATE TABLE calls (
        id          TEXT PRIMARY KEY,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );

    CREATE TABLE turns (
        id          INTEGER PRIMARY KEY,
        call_id     TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
        seq         INTEGER NOT NULL,
        role        TEXT NOT NULL,
        text        TEXT NOT NULL,
        created_at  REAL NOT NULL,
        source      TEXT,
        UNIQUE (call_id, seq)
    );

    CREATE TABLE voice_requests (
        id          TEXT PRIMARY KEY,
        call_id     TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
        process_id  TEXT NOT NULL,
        input_text  TEXT,
        audio_path  TEXT,
        transcript  TEXT,
        reply       TEXT,
        speech_path TEXT,
        stage       TEXT NOT NULL,
        latency_ms  TEXT NOT NULL,              -- JSON
        usage       TEXT NOT NULL,              -- JSON
        model       TEXT,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE INDEX voice_requests_call ON voice_requests(call_id, created_at);

    CREATE TABLE transfers (
        id              TEXT PRIMARY KEY,
        call_id         TEXT NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
        process_id      TEXT NOT NULL,
        from_agent      TEXT NOT NULL,
        to_agent        TEXT NOT NULL,
        status          TEXT NOT NULL,
        summary         TEXT,                   -- JSON
        summary_source  TEXT,
        reason          TEXT,
        created_at      REAL NOT NULL,
        updated_at      REAL NOT NULL,
        completed_at    REAL
    );
    CREATE INDEX transfers_created ON transfers(created_at);
    CREATE INDEX transfers_status_created ON transfers(status, created_at);
    CREATE INDEX transfers_call ON transfers(call_id);
    """,
    # 3: no query reads processes by state (the engine keeps them all in memory), and every
    # state change paid for this index: an entry removed and one added in the same commit
    """
    DROP INDEX IF EXISTS processes_state;
    """,
    # 4: events are numbered in time order, so their number answers the two questions asked of
    # their time (the last hour's count, what retention deletes): an index on ts cost every
    # event an entry, a fifth of the pages a busy run writes to the WAL
    """
    DROP INDEX IF EXISTS events_ts;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
