-- The PostgreSQL adapter's statements, by name (console/store/pg_sql.py reads them).
-- Batch statements take positional parameters (%s: executemany sends rows as tuples);
-- the others take named ones.

-- name: bump_changes
UPDATE changes SET n = n + 1 WHERE id = 1;

-- name: change_marker
SELECT n FROM changes WHERE id = 1;

-- name: upsert_process
INSERT INTO processes (id, kind, priority, spec, resources, max_attempts, state, reason, progress, attempt,
                       failures, interruption, checkpoint, checkpoint_seq, created_at, updated_at, started_at,
                       finished_at, resumes_total, resumes_succeeded, resumes_failed, resume_seconds, interruptions)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    kind = excluded.kind, priority = excluded.priority, spec = excluded.spec, resources = excluded.resources,
    max_attempts = excluded.max_attempts, state = excluded.state, reason = excluded.reason,
    progress = excluded.progress, attempt = excluded.attempt, failures = excluded.failures,
    interruption = excluded.interruption, checkpoint = excluded.checkpoint,
    checkpoint_seq = excluded.checkpoint_seq, created_at = excluded.created_at,
    updated_at = excluded.updated_at, started_at = excluded.started_at, finished_at = excluded.finished_at,
    resumes_total = excluded.resumes_total, resumes_succeeded = excluded.resumes_succeeded,
    resumes_failed = excluded.resumes_failed, resume_seconds = excluded.resume_seconds,
    interruptions = excluded.interruptions;

-- name: add_dependency
INSERT INTO dependencies (dependent, dependency, type, required_completion_percent, timeout_minutes)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (dependent, dependency) DO NOTHING;

-- name: delete_request
DELETE FROM resume_requests WHERE process_id = %s;

-- name: upsert_request
INSERT INTO resume_requests (process_id, priority, requested_at, seq, source, not_before, force_immediate)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (process_id) DO UPDATE SET
    priority = excluded.priority, requested_at = excluded.requested_at, seq = excluded.seq,
    source = excluded.source, not_before = excluded.not_before, force_immediate = excluded.force_immediate;

-- name: upsert_checkpoint
INSERT INTO checkpoints (process_id, seq, progress, data, created_at) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (process_id, seq) DO UPDATE SET
    progress = excluded.progress, data = excluded.data, created_at = excluded.created_at;

-- name: prune_checkpoints
DELETE FROM checkpoints WHERE process_id = %s AND seq <= %s;

-- name: add_event
INSERT INTO events (seq, ts, process_id, type, message, data) VALUES (%s, %s, %s, %s, %s, %s);

-- name: add_log
INSERT INTO logs (process_id, ts, line) VALUES (%s, %s, %s);

-- name: upsert_pool
INSERT INTO pools (name, size) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET size = excluded.size;

-- name: upsert_call
INSERT INTO calls (id, created_at, updated_at) VALUES (%s, %s, %s)
ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at;

-- Numbered inside the transaction, so two requests on one call never take the same number.
-- name: add_turn
INSERT INTO turns (call_id, seq, role, text, created_at, source)
VALUES (%s, (SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE call_id = %s), %s, %s, %s, %s);

-- name: upsert_voice_request
INSERT INTO voice_requests (id, call_id, process_id, input_text, audio_path, transcript, reply, speech_path, stage,
                            latency_ms, usage, model, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    call_id = excluded.call_id, process_id = excluded.process_id, input_text = excluded.input_text,
    audio_path = excluded.audio_path, transcript = excluded.transcript, reply = excluded.reply,
    speech_path = excluded.speech_path, stage = excluded.stage, latency_ms = excluded.latency_ms,
    usage = excluded.usage, model = excluded.model, created_at = excluded.created_at,
    updated_at = excluded.updated_at;

-- name: upsert_transfer
INSERT INTO transfers (id, call_id, process_id, from_agent, to_agent, status, summary, summary_source, reason,
                       created_at, updated_at, completed_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    call_id = excluded.call_id, process_id = excluded.process_id, from_agent = excluded.from_agent,
    to_agent = excluded.to_agent, status = excluded.status, summary = excluded.summary,
    summary_source = excluded.summary_source, reason = excluded.reason, created_at = excluded.created_at,
    updated_at = excluded.updated_at, completed_at = excluded.completed_at;

-- name: answer_command
UPDATE commands SET status = %s, result = %s, handled_at = %s WHERE id = %s;

-- name: lease_for_update
SELECT * FROM lease WHERE id = 1 FOR UPDATE;

-- The generation rises only when the lease passes to another token.
-- name: take_lease
UPDATE lease SET
    generation = generation + CASE WHEN token IS DISTINCT FROM %(token)s THEN 1 ELSE 0 END,
    token = %(token)s, pid = %(pid)s, host = %(host)s, role = %(role)s,
    acquired_at = %(acquired_at)s, heartbeat_at = %(heartbeat_at)s
WHERE id = 1
RETURNING generation;

-- name: renew_lease
UPDATE lease SET heartbeat_at = %(now)s WHERE id = 1 AND token = %(token)s;

-- name: release_lease
UPDATE lease SET token = NULL, pid = NULL, host = NULL, role = NULL, acquired_at = NULL, heartbeat_at = NULL
WHERE id = 1 AND token = %(token)s;

-- name: lease_holder
SELECT * FROM lease WHERE id = 1 AND token IS NOT NULL;

-- name: list_processes
SELECT * FROM processes ORDER BY created_at, id;

-- name: get_process
SELECT * FROM processes WHERE id = %(id)s;

-- name: list_dependencies
SELECT * FROM dependencies;

-- name: list_requests
SELECT * FROM resume_requests ORDER BY seq;

-- name: get_request
SELECT * FROM resume_requests WHERE process_id = %(id)s;

-- name: list_pools
SELECT name, size FROM pools;

-- name: last_event_seq
SELECT COALESCE(MAX(seq), 0) AS n FROM events;

-- name: last_request_seq
SELECT COALESCE(MAX(seq), 0) AS n FROM resume_requests;

-- name: post_command
INSERT INTO commands (kind, payload, created_at) VALUES (%(kind)s, %(payload)s, %(created_at)s) RETURNING id;

-- name: new_commands
SELECT * FROM commands WHERE status = 'new' ORDER BY id;

-- name: get_command
SELECT * FROM commands WHERE id = %(id)s;

-- The newest `limit` events (of one process when `process_id` is given, below `before_seq`
-- when it is given), newest first.
-- name: events
SELECT * FROM events
WHERE (%(process_id)s::text IS NULL OR process_id = %(process_id)s)
  AND (%(before_seq)s::bigint IS NULL OR seq < %(before_seq)s)
ORDER BY seq DESC LIMIT %(limit)s;

-- name: events_after
SELECT * FROM events WHERE seq > %(seq)s ORDER BY seq LIMIT %(limit)s;

-- Events are numbered in time order: the window starts after the newest event older than `since`.
-- name: count_events
SELECT type, COUNT(*) AS n FROM events
WHERE seq > COALESCE((SELECT seq FROM events WHERE ts < %(since)s ORDER BY seq DESC LIMIT 1), -1)
  AND type = ANY(%(types)s)
GROUP BY type;

-- name: checkpoints
SELECT * FROM checkpoints WHERE process_id = %(id)s ORDER BY seq DESC LIMIT %(limit)s;

-- name: log_lines_newest
SELECT id, process_id, ts, line FROM logs ORDER BY id DESC LIMIT %(limit)s;

-- name: log_lines_after
SELECT id, process_id, ts, line FROM logs WHERE id > %(after)s ORDER BY id LIMIT %(limit)s;

-- name: logs
SELECT ts, line FROM logs WHERE process_id = %(id)s ORDER BY id DESC LIMIT %(limit)s;

-- The oldest `batch` events only (numbered in time order), never the newest one: the engine
-- numbers on from it after a restart.
-- name: prune_events
DELETE FROM events WHERE seq IN (
    SELECT seq FROM (SELECT seq, ts FROM events ORDER BY seq LIMIT %(batch)s) oldest
    WHERE ts < %(before)s AND seq < (SELECT MAX(seq) FROM events));

-- name: prune_logs
DELETE FROM logs WHERE id IN (SELECT id FROM logs WHERE ts < %(before)s LIMIT %(batch)s);

-- name: prune_commands
DELETE FROM commands WHERE status <> 'new' AND handled_at < %(before)s;

-- name: get_call
SELECT * FROM calls WHERE id = %(id)s;

-- name: call_turns
SELECT * FROM turns WHERE call_id = %(id)s ORDER BY seq DESC LIMIT %(limit)s;

-- name: count_turns
SELECT COUNT(*) AS n FROM turns WHERE call_id = %(id)s;

-- Each call with its number of turns and its newest turn (t_seq is NULL when it has none).
-- name: list_calls
SELECT c.id, c.created_at, c.updated_at, counted.n,
       last.seq AS t_seq, last.role AS t_role, last.text AS t_text, last.created_at AS t_created_at,
       last.source AS t_source
FROM calls c
CROSS JOIN LATERAL (SELECT COUNT(*) AS n FROM turns WHERE call_id = c.id) counted
LEFT JOIN LATERAL (SELECT * FROM turns WHERE call_id = c.id ORDER BY seq DESC LIMIT 1) last ON true
ORDER BY c.updated_at DESC LIMIT %(limit)s OFFSET %(offset)s;

-- name: get_voice_request
SELECT * FROM voice_requests WHERE id = %(id)s;

-- name: voice_requests
SELECT * FROM voice_requests WHERE (%(call_id)s::text IS NULL OR call_id = %(call_id)s)
ORDER BY created_at DESC LIMIT %(limit)s;

-- name: voice_lines
SELECT id, call_id, process_id, stage, input_text, transcript, reply FROM voice_requests
ORDER BY created_at DESC LIMIT %(limit)s;

-- name: get_transfer
SELECT * FROM transfers WHERE id = %(id)s;

-- name: list_transfers
SELECT * FROM transfers
WHERE (%(status)s::text IS NULL OR status = %(status)s) AND (%(call_id)s::text IS NULL OR call_id = %(call_id)s)
ORDER BY created_at DESC LIMIT %(limit)s OFFSET %(offset)s;

-- Migrating (at open, in one transaction): the lock makes processes opening at once take turns.
-- name: migration_lock
SELECT pg_advisory_xact_lock(%(key)s);

-- name: schema_found
SELECT to_regclass('switchboard_schema') IS NOT NULL AS ours, to_regclass('processes') IS NOT NULL AS taken;

-- name: create_schema_version
CREATE TABLE switchboard_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
INSERT INTO switchboard_schema VALUES (1, 0);

-- name: schema_version
SELECT version FROM switchboard_schema WHERE id = 1;

-- name: set_schema_version
UPDATE switchboard_schema SET version = %(version)s WHERE id = 1;

-- The first statement of a transaction whose reads must agree with each other.
-- name: read_one_moment
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;
