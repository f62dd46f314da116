-- Every statement about jobs, their events and API keys, by name (`service.sql` loads them;
-- `service.ledger` and `service.keys` run them). One placeholder style, `%(name)s`: psycopg
-- takes it as written, asyncpg gets it numbered (`$1`). JSON goes in as text, cast here.
--
-- A block marked `-- appends: event` is a job transition: it ends in `RETURNING *`, and
-- `service.sql` wraps it so that every returned job gets its `job_events` row (status,
-- attempt, worker, and `%(detail)s`) in the same statement. That wrapper is the only place
-- that writes `job_events`: a transition and its history commit together or not at all.

-- name: insert_jobs
-- appends: event
-- Jobs arrive as column arrays (one statement of one shape for a submit, a batch or the
-- reconciler: prepared once, one round trip). A job whose owner already used its
-- idempotency key is left out; the unique index decides, not a check-then-insert. When a
-- job may start is decided by the database's clock: `run_at`, or now + `delay_s`; a start
-- in the future waits as `scheduled`. A job with parents still running waits as `waiting`
-- (`depends_on`, comma-separated ids); one whose parent failed already, under the policy
-- `cancel`, is recorded canceled with the `error` given. Under fair share (`fair_quota`
-- > 0, `service.fair_share`) a job queued at once is `parked` when its owner already has
-- that many jobs of its queue in flight, counting the batch's own before it.
INSERT INTO jobs (id, task, queue, args, timeout_s, max_attempts, backoff_s, owner, meta,
                  run_at, idempotency_key, request_hash, callback_url, trace_context,
                  depends_on, pending_parents, on_parent_failure, error, unique_key,
                  concurrency_key, max_concurrency, priority, parked, finished_at, status)
SELECT j.id, j.task, j.queue, j.args, j.timeout_s, j.max_attempts, j.backoff_s, j.owner,
       j.meta, CASE WHEN s.start > now() THEN s.start END, j.idempotency_key,
       j.request_hash, j.callback_url, j.trace_context,
       string_to_array(j.depends_on, ',')::uuid[], j.pending_parents, j.on_parent_failure,
       j.error, j.unique_key, j.concurrency_key, j.max_concurrency, j.priority,
       CASE WHEN j.fair_quota > 0 AND j.error IS NULL AND j.pending_parents = 0
                 AND NOT coalesce(s.start > now(), false)
            THEN (SELECT count(*) FROM jobs f
                  WHERE f.owner = j.owner AND f.queue = j.queue
                    AND f.status IN ('queued', 'started') AND NOT f.parked)
                 + row_number() OVER (PARTITION BY j.owner, j.queue ORDER BY j.n) > j.fair_quota
            ELSE false END,
       CASE WHEN j.error IS NOT NULL THEN now() END,
       CASE WHEN j.error IS NOT NULL THEN 'canceled'
            WHEN j.pending_parents > 0 THEN 'waiting'
            WHEN s.start > now() THEN 'scheduled' ELSE 'queued' END
FROM unnest(%(id)s::uuid[], %(task)s::text[], %(queue)s::text[], %(args)s::jsonb[],
            %(timeout_s)s::int[], %(max_attempts)s::int[], %(backoff_s)s::float8[],
            %(owner)s::text[], %(meta)s::jsonb[], %(run_at)s::timestamptz[],
            %(delay_s)s::float8[], %(idempotency_key)s::text[], %(request_hash)s::text[],
            %(callback_url)s::text[], %(trace_context)s::text[], %(depends_on)s::text[],
            %(pending_parents)s::int[], %(on_parent_failure)s::text[], %(error)s::jsonb[],
            %(unique_key)s::text[], %(concurrency_key)s::text[], %(max_concurrency)s::int[],
            %(priority)s::smallint[], %(fair_quota)s::int[]) WITH ORDINALITY
       AS j (id, task, queue, args, timeout_s, max_attempts, backoff_s, owner, meta, run_at,
             delay_s, idempotency_key, request_hash, callback_url, trace_context, depends_on,
             pending_parents, on_parent_failure, error, unique_key, concurrency_key,
             max_concurrency, priority, fair_quota, n)
CROSS JOIN LATERAL
  (SELECT coalesce(j.run_at, now() + j.delay_s * interval '1 second') AS start) AS s
ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING *

-- name: lock_unique_keys
-- Unique jobs: one submit of an owner's key at a time, until the transaction ends (a lock
-- of the transaction alone: nothing outlives it, so it is safe behind PgBouncer).
SELECT pg_advisory_xact_lock(h)
FROM (SELECT DISTINCT hashtextextended(%(owner)s || E'\n' || k, 0) AS h
      FROM unnest(%(keys)s::text[]) AS k ORDER BY h) AS hashed

-- name: unique_firsts
-- For each key (the n-th asked), the owner's newest job of it created in the last
-- `within_s` seconds whose status is one of `states` (comma-separated).
SELECT u.n AS wanted, j.*
FROM unnest(%(keys)s::text[], %(within_s)s::float8[], %(states)s::text[])
     WITH ORDINALITY AS u (key, within_s, states, n)
CROSS JOIN LATERAL (
  SELECT * FROM jobs
  WHERE owner = %(owner)s AND unique_key = u.key
    AND created_at > now() - u.within_s * interval '1 second'
    AND status = ANY(string_to_array(u.states, ','))
  ORDER BY created_at DESC LIMIT 1) AS j

-- name: lock_parents
-- The owner's jobs that new jobs will depend on, marked as parents and locked (in id order)
-- until the children are recorded: a parent that ends meanwhile either ends first, and
-- its status here is final, or waits for the children's commit and its trigger releases
-- them (architecture.md, "Dependencies"). Ids that are not the owner's are left out.
UPDATE jobs SET has_children = true
WHERE id IN (SELECT id FROM jobs WHERE id = ANY(%(ids)s::uuid[]) AND owner = %(owner)s
             ORDER BY id FOR UPDATE)
RETURNING id, status

-- name: released_children
-- Children that the end of these jobs released and that wait to be handed to RQ.
SELECT * FROM jobs
WHERE depends_on && %(parents)s::uuid[] AND depends_on IS NOT NULL
  AND status = 'queued' AND enqueued_at IS NULL

-- name: parents
-- A job's parents as its task sees them, in the order of its depends_on.
SELECT p.id, p.task, p.status, p.result, p.error
FROM jobs c CROSS JOIN unnest(c.depends_on) WITH ORDINALITY AS d (id, n)
JOIN jobs p ON p.id = d.id
WHERE c.id = %(id)s
ORDER BY d.n

-- name: by_idempotency_keys
SELECT * FROM jobs WHERE owner = %(owner)s AND idempotency_key = ANY(%(keys)s::text[])

-- name: mark_enqueued
-- When RQ took each job, unless a worker's claim recorded it first.
UPDATE jobs SET enqueued_at = marked.at, updated_at = now()
FROM unnest(%(ids)s::uuid[], %(at)s::timestamptz[]) AS marked (id, at)
WHERE jobs.id = marked.id AND jobs.enqueued_at IS NULL

-- name: get_job
-- The hottest read (every poll). `owner` NULL: an admin, who sees every job.
SELECT * FROM jobs WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s)

-- name: list_jobs
-- Newest first, keyset-paginated. `{filters}` is filled from `ledger.LIST_FILTERS` with the
-- filters a request gives, so each combination is one fixed, prepared statement that the
-- listing indexes serve.
SELECT * FROM jobs WHERE {filters} ORDER BY created_at DESC, id DESC LIMIT %(limit)s

-- name: lock_status
-- A visible job's status, locked until the transaction ends (cancel decides on it).
SELECT status FROM jobs
WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s)
FOR UPDATE

-- name: cancel
-- appends: event
-- A running attempt keeps its lease: it may run on until its worker stops it and reports
-- (`release_lease`), or the lease lapses; a retry waits for that.
UPDATE jobs SET status = 'canceled', finished_at = now(), updated_at = now(), held = false,
                held_by = NULL,
                parked = false, lease_expires_at = CASE WHEN status = 'started' THEN lease_expires_at END
WHERE id = %(id)s
RETURNING *

-- name: retry
-- appends: event
-- A failed or canceled job queued again: the next claim is a new attempt, same id. Not
-- while a canceled attempt may still run (its lease is live).
UPDATE jobs SET status = 'queued', max_attempts = greatest(max_attempts, attempt + 1),
                result = NULL, finished_at = NULL, run_at = NULL, lease_expires_at = NULL,
                enqueued_at = NULL, checked_at = NULL, updated_at = now()
WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND status IN ('failed', 'canceled')
  AND (lease_expires_at IS NULL OR lease_expires_at < now())
RETURNING *

-- name: events_after
SELECT * FROM job_events WHERE job_id = %(job_id)s AND id > %(after)s ORDER BY id

-- name: census
-- Rows by status and queue, read at each /metrics scrape in one pass: the counts by
-- status, and the autoscaling signals (the queued rows: jobs due and waiting for a
-- worker, and how long the oldest has waited, since it was submitted or since it fell
-- due, for a scheduled job or a retry), apart from the held jobs (by a concurrency key or
-- a pause: more workers would not start them); and the jobs parked by fair share.
SELECT status, queue, held, parked, count(*) AS n,
       extract(epoch FROM now() - min(coalesce(run_at, created_at)))::float8 AS oldest_s
FROM jobs GROUP BY status, queue, held, parked

-- name: tenant_backlog
-- Each owner's queued jobs (parked ones included), for /metrics.
SELECT owner, count(*) AS n FROM jobs WHERE status = 'queued' GROUP BY owner

-- name: ping
SELECT 1

-- name: claim
-- appends: event
-- The row is the lock: only a queued (or due scheduled) job starts, one attempt at a time,
-- and none of a paused queue. A job with a concurrency key starts only by a claim that
-- holds the key's lock (`service.concurrency`: `locked_key`, so that the count of its
-- running jobs is fresh) and while fewer than `max_concurrency` of them run. The lease is
-- short; the worker renews it while the attempt runs (`renew_lease`). A held job that a
-- spare delivery starts is no longer held.
UPDATE jobs SET status = 'started', attempt = attempt + 1, worker = %(worker)s,
                claim_token = %(token)s, started_at = now(), updated_at = now(), held = false,
                held_by = NULL,
                enqueued_at = coalesce(enqueued_at, now()),
                lease_expires_at = now() + %(lease_s)s * interval '1 second'
WHERE id = %(id)s AND (status = 'queued' OR (status = 'scheduled' AND run_at <= now()))
  AND NOT EXISTS (SELECT 1 FROM queue_states q WHERE q.name = jobs.queue AND q.paused)
  AND (jobs.concurrency_key IS NULL
       OR (jobs.concurrency_key = %(locked_key)s
           AND (SELECT count(*) FROM jobs r
                WHERE r.concurrency_key = jobs.concurrency_key AND r.status = 'started')
               < jobs.max_concurrency))
RETURNING *

-- name: reclaim
-- A claim retried after its answer was lost: the row this very delivery claimed, if so.
SELECT * FROM jobs WHERE id = %(id)s AND status = 'started' AND claim_token = %(token)s

-- name: renew_lease
-- A running attempt's heartbeat: fenced, and not a visible change (no event, no NOTIFY).
UPDATE jobs SET lease_expires_at = now() + %(lease_s)s * interval '1 second'
WHERE id = %(id)s AND status = 'started' AND attempt = %(attempt)s
RETURNING id

-- name: release_lease
-- The worker's word that an attempt whose job was taken from it (canceled) has stopped.
UPDATE jobs SET lease_expires_at = NULL
WHERE id = %(id)s AND attempt = %(attempt)s AND status <> 'started'
  AND lease_expires_at IS NOT NULL
RETURNING id

-- name: finish
-- appends: event
-- Outcomes are fenced: only the attempt that is running may write one.
UPDATE jobs SET status = 'finished', result = %(result)s::jsonb, error = NULL,
                finished_at = now(), lease_expires_at = NULL, updated_at = now()
WHERE id = %(id)s AND status = 'started' AND attempt = %(attempt)s
RETURNING *

-- name: fail
-- appends: event
UPDATE jobs SET status = 'failed', error = %(error)s::jsonb,
                finished_at = now(), lease_expires_at = NULL, updated_at = now()
WHERE id = %(id)s AND status = 'started' AND attempt = %(attempt)s
RETURNING *

-- name: retry_later
-- appends: event
-- A failed attempt with attempts left waits as `scheduled`, keeping its error.
UPDATE jobs SET status = 'scheduled', error = %(error)s::jsonb,
                run_at = now() + %(delay_s)s * interval '1 second', lease_expires_at = NULL,
                updated_at = now()
WHERE id = %(id)s AND status = 'started' AND attempt = %(attempt)s
  AND attempt < max_attempts
RETURNING *

-- name: progress
-- Not a transition: no event, but NOTIFY wakes the job's watchers (migration 0005).
UPDATE jobs SET progress = %(progress)s::jsonb, updated_at = now()
WHERE id = %(id)s AND status = 'started' AND attempt = %(attempt)s
RETURNING id

-- name: note
-- appends: event
-- An event that is not a transition (a callback delivery): the job as it is.
SELECT * FROM jobs WHERE id = %(id)s

-- name: task_stats
-- Per task, for one owner's jobs created in [since, until): counts by status and run-time
-- percentiles (seconds) of the finished ones.
SELECT task, count(*) AS total,
       count(*) FILTER (WHERE status = 'waiting') AS waiting,
       count(*) FILTER (WHERE status = 'queued') AS queued,
       count(*) FILTER (WHERE status = 'scheduled') AS scheduled,
       count(*) FILTER (WHERE status = 'started') AS started,
       count(*) FILTER (WHERE status = 'finished') AS finished,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'canceled') AS canceled,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
         FILTER (WHERE status = 'finished') AS p50_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
         FILTER (WHERE status = 'finished') AS p90_s,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
         FILTER (WHERE status = 'finished') AS p99_s
FROM jobs
WHERE owner = %(owner)s AND created_at >= %(since)s AND created_at < %(until)s
GROUP BY task ORDER BY task

-- name: delete_final
-- Up to `limit` final jobs finished before `before` (their events go with them, by the
-- foreign key), of `owner` (NULL: every owner).
DELETE FROM jobs WHERE id IN (
  SELECT id FROM jobs
  WHERE status IN ('finished', 'failed', 'canceled') AND finished_at < %(before)s
    AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING id

-- The reconciler's statements lock the rows they pick with SKIP LOCKED, so reconcilers can
-- run side by side; the caller enqueues the returned rows before committing.

-- name: rescue_expired
-- appends: event
-- Started rows whose lease expired: queued again while attempts are left, else failed.
UPDATE jobs SET
  status = CASE WHEN attempt < max_attempts THEN 'queued' ELSE 'failed' END,
  error = %(error)s::jsonb, lease_expires_at = NULL, checked_at = now(), updated_at = now(),
  enqueued_at = CASE WHEN attempt < max_attempts THEN now() ELSE enqueued_at END,
  finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE now() END
WHERE id IN (
  SELECT id FROM jobs WHERE status = 'started' AND lease_expires_at < now()
  ORDER BY lease_expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING *

-- name: release_due
-- appends: event
-- Scheduled rows whose time has come become queued.
UPDATE jobs SET status = 'queued', enqueued_at = now(), checked_at = now(), updated_at = now()
WHERE id IN (
  SELECT id FROM jobs WHERE status = 'scheduled' AND run_at <= now()
  ORDER BY run_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING *

-- name: unchecked_queued
-- Queued rows not seen in Redis for a while (or never enqueued), locked for checking (a
-- held or parked job is out of Redis on purpose). A row never enqueued counts from its
-- last change, not its creation: a child released by its parents' end (or a job retried)
-- long after it was recorded is being handed to Redis by whoever released it.
SELECT * FROM jobs
WHERE status = 'queued' AND NOT held AND NOT parked
  AND coalesce(checked_at, enqueued_at, updated_at) < now() - %(older_than_s)s * interval '1 second'
ORDER BY created_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED

-- name: enqueued_at
SELECT id, coalesce(enqueued_at, created_at) AS at FROM jobs WHERE id = ANY(%(ids)s::uuid[])

-- name: mark_held
UPDATE jobs SET checked_at = now() WHERE id = ANY(%(ids)s::uuid[])

-- name: mark_handed_over
-- Released children a worker handed to RQ: when RQ took them (unless a claim recorded it
-- first), and checked then.
UPDATE jobs SET enqueued_at = coalesce(enqueued_at, now()), checked_at = now()
WHERE id = ANY(%(ids)s::uuid[])

-- name: mark_redelivered
-- appends: event
UPDATE jobs SET enqueued_at = now(), checked_at = now(), updated_at = now()
WHERE id = ANY(%(ids)s::uuid[]) AND status = 'queued'
RETURNING *

-- name: callbacks_due
-- Final jobs whose callback is not yet submitted for this finish, each marked as submitted.
-- The predicate is ix_jobs_callback_due's, word for word, so the index serves it.
UPDATE jobs SET callback_for = finished_at
WHERE id IN (
  SELECT id FROM jobs
  WHERE callback_url IS NOT NULL AND status IN ('finished', 'failed', 'canceled')
    AND callback_for IS DISTINCT FROM finished_at
  ORDER BY finished_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING id, finished_at, trace_context

-- name: authenticate
SELECT name, admin FROM api_keys WHERE key_hash = %(key_hash)s AND revoked_at IS NULL

-- name: create_key
INSERT INTO api_keys (name, key_hash, prefix, admin)
VALUES (%(name)s, %(key_hash)s, %(prefix)s, %(admin)s)

-- name: list_keys
SELECT name, prefix, admin, created_at, revoked_at FROM api_keys ORDER BY created_at

-- name: revoke_key
UPDATE api_keys SET revoked_at = now() WHERE name = %(name)s AND revoked_at IS NULL
RETURNING name

-- Cron schedules (`service.schedules`). A client sees and changes only its own; `owner`
-- NULL: an admin, who sees every one.

-- name: now
SELECT now() AS now

-- name: insert_schedule
INSERT INTO schedules (id, owner, name, cron, timezone, task, args, queue, catch_up, paused,
                       next_fire_at)
VALUES (%(id)s, %(owner)s, %(name)s, %(cron)s, %(timezone)s, %(task)s, %(args)s::jsonb,
        %(queue)s, %(catch_up)s, %(paused)s, %(next_fire_at)s)
ON CONFLICT (owner, name) DO NOTHING
RETURNING *

-- name: count_schedules
SELECT count(*) AS n FROM schedules WHERE owner = %(owner)s

-- name: get_schedule
SELECT * FROM schedules WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s)

-- name: lock_schedule
SELECT * FROM schedules WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s)
FOR UPDATE

-- name: list_schedules
SELECT * FROM schedules WHERE %(owner)s::text IS NULL OR owner = %(owner)s ORDER BY owner, name

-- name: update_schedule
UPDATE schedules SET name = %(name)s, cron = %(cron)s, timezone = %(timezone)s, task = %(task)s,
                     args = %(args)s::jsonb, queue = %(queue)s, catch_up = %(catch_up)s,
                     paused = %(paused)s, next_fire_at = %(next_fire_at)s, updated_at = now()
WHERE id = %(id)s
RETURNING *

-- name: delete_schedule
DELETE FROM schedules WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s)
RETURNING id

-- name: schedule_jobs
-- The jobs a schedule fired (those retention has not deleted yet).
SELECT id, status, meta, created_at FROM jobs WHERE id = ANY(%(ids)s::uuid[])

-- name: due_schedules
-- Schedules with a tick due, locked (several reconcilers: each schedule fires in one).
SELECT *, now() AS db_now FROM schedules
WHERE NOT paused AND next_fire_at <= now()
ORDER BY next_fire_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED

-- name: fired
UPDATE schedules SET next_fire_at = %(next_fire_at)s,
                     last_fired_at = coalesce(%(last_fired_at)s, last_fired_at),
                     recent_jobs = (%(jobs)s::uuid[] || recent_jobs)[1:10]
WHERE id = %(id)s

-- name: declare_schedule
-- A schedule declared in code (as the client `system`): the code is its truth. Its next
-- tick moves only when its cron or time zone changed.
INSERT INTO schedules (id, owner, name, cron, timezone, task, args, queue, catch_up,
                       next_fire_at)
VALUES (%(id)s, %(owner)s, %(name)s, %(cron)s, %(timezone)s, %(task)s, %(args)s::jsonb,
        %(queue)s, %(catch_up)s, %(next_fire_at)s)
ON CONFLICT (owner, name) DO UPDATE SET
  next_fire_at = CASE WHEN (schedules.cron, schedules.timezone)
                           IS DISTINCT FROM (excluded.cron, excluded.timezone)
                      THEN excluded.next_fire_at ELSE schedules.next_fire_at END,
  cron = excluded.cron, timezone = excluded.timezone, task = excluded.task,
  args = excluded.args, queue = excluded.queue, catch_up = excluded.catch_up,
  updated_at = now()
WHERE (schedules.cron, schedules.timezone, schedules.task, schedules.args, schedules.queue,
       schedules.catch_up)
      IS DISTINCT FROM (excluded.cron, excluded.timezone, excluded.task, excluded.args,
                        excluded.queue, excluded.catch_up)

-- name: forget_undeclared
-- The system's schedules no longer declared in code.
DELETE FROM schedules WHERE owner = %(owner)s AND NOT (name = ANY(%(names)s::text[]))
RETURNING name

-- Queues as objects (`service.queues`).

-- name: paused_queues
SELECT name FROM queue_states WHERE paused

-- name: queue_states
SELECT * FROM queue_states

-- name: set_paused
INSERT INTO queue_states (name, paused, changed_at, changed_by)
VALUES (%(name)s, %(paused)s, now(), %(by)s)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, changed_at = excluded.changed_at,
                                 changed_by = excluded.changed_by
RETURNING *

-- name: queue_paused_locked
-- Whether a job's queue is paused, its state row locked until the transaction ends (a
-- resume, which updates that row, waits for it; so a job held here is seen by the resume's
-- release). No row: the queue was never paused.
SELECT q.name, q.paused FROM jobs j JOIN queue_states q ON q.name = j.queue
WHERE j.id = %(id)s
FOR SHARE OF q

-- name: hold_paused
-- appends: event
-- A job a worker popped from a paused queue: held out of Redis, still queued, no attempt
-- spent, until the queue is resumed.
UPDATE jobs SET held = true, held_by = 'pause'
WHERE id = %(id)s AND status = 'queued' AND NOT held
RETURNING *

-- name: release_paused
-- appends: event
-- Jobs a pause held whose queue is open again (of one queue, or of all), the oldest first,
-- for the caller to enqueue at the back of their list: those without a concurrency key,
-- and those whose key has room (`release_held`'s count: the oldest that fit). Rows locked
-- elsewhere are left to the next release.
UPDATE jobs SET held = false, held_by = NULL, enqueued_at = now(), checked_at = now()
WHERE id IN (
  SELECT h.id FROM (
    SELECT p.id, p.concurrency_key, p.max_concurrency,
           row_number() OVER (PARTITION BY p.concurrency_key ORDER BY p.created_at) AS n
    FROM (SELECT id, concurrency_key, max_concurrency, created_at FROM jobs
          WHERE held AND held_by = 'pause' AND status = 'queued'
            AND (%(queue)s::text IS NULL OR queue = %(queue)s)
            AND NOT EXISTS (SELECT 1 FROM queue_states q WHERE q.name = jobs.queue AND q.paused)
          FOR UPDATE SKIP LOCKED) AS p) AS h
  WHERE h.concurrency_key IS NULL
     OR h.n <= h.max_concurrency - (SELECT count(*) FROM jobs r
                                    WHERE r.concurrency_key = h.concurrency_key
                                      AND r.status = 'started'))
  AND held_by = 'pause'
RETURNING *

-- name: hold_paused_for_key
-- appends: event
-- After `release_paused` in the same transaction: the keyed jobs a pause held that it did
-- not release (their key has no room) are held for their key from now on, so that its
-- release (`release_held`) hands them back.
UPDATE jobs SET held_by = 'key'
WHERE id IN (
  SELECT id FROM jobs
  WHERE held AND held_by = 'pause' AND status = 'queued' AND concurrency_key IS NOT NULL
    AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    AND NOT EXISTS (SELECT 1 FROM queue_states q WHERE q.name = jobs.queue AND q.paused)
  FOR UPDATE SKIP LOCKED)
  AND held_by = 'pause'
RETURNING *

-- name: queue_census
-- Per queue: jobs due and waiting (the oldest one's wait, since submitted or due) and jobs
-- running.
SELECT queue,
       count(*) FILTER (WHERE status = 'queued') AS queued,
       count(*) FILTER (WHERE status = 'started') AS running,
       extract(epoch FROM now() - min(coalesce(run_at, created_at))
                                 FILTER (WHERE status = 'queued'))::float8 AS oldest_s
FROM jobs WHERE status IN ('queued', 'started')
GROUP BY queue

-- Bulk operations (`service.bulk`): `{filters}` are `GET /jobs`' (`service.listing`).

-- name: bulk_cancelable
-- The jobs a bulk cancel would change (not final): the oldest, and how many in all.
SELECT *, count(*) OVER () AS matched FROM jobs
WHERE {filters} AND status IN ('waiting', 'queued', 'scheduled', 'started')
ORDER BY created_at LIMIT %(sample)s

-- name: bulk_retryable
-- The jobs a bulk retry would queue again (failed or canceled, no attempt still running).
SELECT *, count(*) OVER () AS matched FROM jobs
WHERE {filters} AND status IN ('failed', 'canceled')
  AND (lease_expires_at IS NULL OR lease_expires_at < now())
ORDER BY created_at LIMIT %(sample)s

-- name: bulk_cancel
-- appends: event
-- As `cancel`, for up to `limit` of the oldest matching jobs. A running one keeps its
-- lease (so `lease_expires_at` tells which ones were running).
UPDATE jobs SET status = 'canceled', finished_at = now(), updated_at = now(), held = false,
                held_by = NULL,
                parked = false, lease_expires_at = CASE WHEN status = 'started' THEN lease_expires_at END
WHERE id IN (SELECT id FROM jobs
             WHERE {filters} AND status IN ('waiting', 'queued', 'scheduled', 'started')
             ORDER BY created_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING *

-- name: bulk_retry
-- appends: event
-- As `retry`, for up to `limit` of the oldest matching jobs.
UPDATE jobs SET status = 'queued', max_attempts = greatest(max_attempts, attempt + 1),
                result = NULL, finished_at = NULL, run_at = NULL, lease_expires_at = NULL,
                enqueued_at = NULL, checked_at = NULL, updated_at = now()
WHERE id IN (SELECT id FROM jobs
             WHERE {filters} AND status IN ('failed', 'canceled')
               AND (lease_expires_at IS NULL OR lease_expires_at < now())
             ORDER BY created_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING *

-- Concurrency keys (`service.concurrency`).

-- name: lock_concurrency_key
-- One claim of a key at a time, until its transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended('concurrency' || E'\n' || %(key)s, 0))

-- name: hold
-- appends: event
-- A job over its key's limit: held out of Redis, still queued, no attempt spent.
UPDATE jobs SET held = true, held_by = 'key'
WHERE id = %(id)s AND concurrency_key = %(key)s AND status = 'queued' AND NOT held
RETURNING *

-- name: release_held
-- appends: event
-- Jobs held for keys with room (of one key, or of all), the oldest first, for the caller
-- to enqueue; none of a paused queue (the first release after its resume takes them). A
-- job released twice is delivered twice and claimed once.
UPDATE jobs SET held = false, held_by = NULL, checked_at = now()
WHERE id IN (
  SELECT h.id FROM (
    SELECT id, concurrency_key, max_concurrency,
           row_number() OVER (PARTITION BY concurrency_key ORDER BY created_at) AS n
    FROM jobs
    WHERE held AND held_by = 'key' AND (%(key)s::text IS NULL OR concurrency_key = %(key)s)
      AND NOT EXISTS (SELECT 1 FROM queue_states q WHERE q.name = jobs.queue AND q.paused)) AS h
  WHERE h.n <= h.max_concurrency - (SELECT count(*) FROM jobs r
                                    WHERE r.concurrency_key = h.concurrency_key
                                      AND r.status = 'started'))
  AND held_by = 'key'
RETURNING *

-- Shared rate limits (`service.limiters`). A limiter's starts are spaced 1 / per_s apart
-- by the ledger's clock; one without a rate (per_s NULL) only backs off when told to.

-- name: limiter_wait
-- The limiter's row, locked until the claim's transaction ends (one start of a limiter at
-- a time), and the seconds until its next start may happen (0 or less: now). No row: the
-- limiter has no rate and no back-off, and nothing is locked.
SELECT extract(epoch FROM next_at - clock_timestamp())::float8 AS wait_s
FROM rate_limits WHERE name = %(name)s FOR UPDATE

-- name: limiter_spend
-- A start happened (its event is written): the next may happen 1 / per_s later, by the
-- clock read after that event, so two starts' events are never closer than that.
UPDATE rate_limits
SET next_at = greatest(next_at, clock_timestamp() + coalesce(1 / per_s, 0) * interval '1 second'),
    started = started + 1
WHERE name = %(name)s

-- name: limiter_slot
-- The slot for a job sent away to wait: the first after the limiter's next start and the
-- slots given before it (so jobs sent away come back spread out, in order).
UPDATE rate_limits
SET defer_at = greatest(defer_at, next_at, clock_timestamp())
               + coalesce(1 / per_s, 0) * interval '1 second',
    throttled = throttled + 1
WHERE name = %(name)s
RETURNING defer_at - coalesce(1 / per_s, 0) * interval '1 second' AS run_at

-- name: defer_throttled
-- appends: event
-- A job its limiter cannot start soon: scheduled for its slot, no attempt spent.
UPDATE jobs SET status = 'scheduled', run_at = %(run_at)s, updated_at = now()
WHERE id = %(id)s AND NOT held
  AND (status = 'queued' OR (status = 'scheduled' AND run_at <= now()))
RETURNING *

-- name: limiter_back_off
-- The resource told a job to slow down: the limiter starts nothing for `retry_after_s`.
INSERT INTO rate_limits (name, next_at, backed_off_until, throttled)
VALUES (%(name)s, clock_timestamp() + %(retry_after_s)s * interval '1 second',
        clock_timestamp() + %(retry_after_s)s * interval '1 second', 1)
ON CONFLICT (name) DO UPDATE
SET next_at = greatest(rate_limits.next_at, excluded.next_at),
    backed_off_until = greatest(rate_limits.backed_off_until, excluded.backed_off_until),
    throttled = rate_limits.throttled + 1

-- name: throttle_later
-- appends: event
-- The running attempt was told to slow down (RateLimited): scheduled again after
-- `delay_s` with as many attempts left as before (max_attempts goes up by one; the
-- attempt number stays the fence), at most `max_throttled` times a job.
UPDATE jobs SET status = 'scheduled', error = %(error)s::jsonb, throttled = throttled + 1,
                max_attempts = max_attempts + 1,
                run_at = now() + %(delay_s)s * interval '1 second', lease_expires_at = NULL,
                updated_at = now()
WHERE id = %(id)s AND status = 'started' AND attempt = %(attempt)s
  AND throttled < %(max_throttled)s
RETURNING *

-- name: limiters
SELECT name, per_s, declared, next_at, backed_off_until, started, throttled, changed_at,
       changed_by
FROM rate_limits ORDER BY name

-- name: limiter_set
-- A rate set over the API (or declared: `declared` true). A limiter of a new rate may
-- start at once.
INSERT INTO rate_limits (name, per_s, declared, changed_by)
VALUES (%(name)s, %(per_s)s, %(declared)s, %(by)s)
ON CONFLICT (name) DO UPDATE
SET per_s = excluded.per_s, declared = excluded.declared, changed_by = excluded.changed_by,
    changed_at = now(),
    next_at = least(rate_limits.next_at, greatest(rate_limits.backed_off_until, now())),
    defer_at = least(rate_limits.defer_at, now())
RETURNING name, per_s, declared, next_at, backed_off_until, started, throttled, changed_at,
          changed_by

-- name: limiter_undeclare
-- Declared limiters no longer in JOBS_RATE_LIMITS: no rate any more.
UPDATE rate_limits SET per_s = NULL, declared = false, changed_by = 'config',
                       changed_at = now()
WHERE declared AND NOT (name = ANY(%(names)s::text[]))

-- name: limiter_delete
DELETE FROM rate_limits WHERE name = %(name)s RETURNING name

-- Fair share between tenants (`service.fair_share`).

-- name: admit_parked
-- Parked jobs whose owner has room in their queue again (of one owner and queue, or of
-- all), the oldest first, no longer parked, for the caller to enqueue: up to the owner's
-- quota (`quota` times its weight) less its jobs of that queue in flight.
UPDATE jobs SET parked = false, enqueued_at = now(), checked_at = now()
WHERE id IN (
  SELECT p.id
  FROM (SELECT DISTINCT owner, queue FROM jobs
        WHERE parked AND (%(owner)s::text IS NULL
                          OR (owner = %(owner)s AND queue = %(queue)s))) AS g
  CROSS JOIN LATERAL (
    SELECT greatest(1, round(%(quota)s * coalesce(
             (%(weights)s::float8[])[array_position(%(weighted)s::text[], g.owner)], 1)))
           - (SELECT count(*) FROM jobs f
              WHERE f.owner = g.owner AND f.queue = g.queue
                AND f.status IN ('queued', 'started') AND NOT f.parked) AS free) AS room
  CROSS JOIN LATERAL (
    SELECT id FROM jobs
    WHERE parked AND owner = g.owner AND queue = g.queue AND status = 'queued'
    ORDER BY created_at LIMIT greatest(room.free, 0) FOR UPDATE SKIP LOCKED) AS p)
  AND parked
RETURNING *
