"""Concurrency keys: at most `max_concurrency` jobs of one key run at once, across every
worker and host (architecture.md, "Concurrency keys").

A job's key is a template over its owner, task and args (`"{owner}"`,
`"{args.customer_id}"`), given by its submit or its task and resolved when it is recorded.
The claim of a keyed job takes the key's lock (a lock of the claim's transaction alone) and
counts the key's running jobs after it, so of two workers claiming at once the second sees
the first. A job over the limit is held: it stays `queued`, no attempt spent, out of Redis
(the worker that popped it moves on), until a job of its key ends: the worker that records
that outcome releases the oldest held jobs that now fit and enqueues them, and the
reconciler does the same each pass for what is left (a rescued or canceled job's slot).
A job of a paused queue stays held until its queue is resumed (`service.queues`): one the
pause held is released by the resume if its key has room then, one held for its key by
the first release after the resume.
"""

import json
import logging
import re

from redis import Redis
from redis.exceptions import RedisError

from service import broker, db, errors, jsontext, sql
from service.ledger_writer import LedgerWriter
from service.rows import JobRow, JsonObject
from service.settings import Settings
from service.sql import SyncConnection

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def resolve(template: str, owner: str, task: str, args: JsonObject) -> str:
    """The key a job of `owner` gets from `template` (OptionInvalid for a placeholder that
    is not `{owner}`, `{task}` or `{args.<name>}` of an arg the job has)."""

    def value(match: re.Match[str]) -> str:
        name = match[1]
        if name == "owner":
            return owner
        if name == "task":
            return task
        if name.startswith("args.") and name[5:] in args:
            found = args[name[5:]]
            return found if isinstance(found, str) else json.dumps(found, sort_keys=True)
        raise errors.OptionInvalid(
            f"concurrency_key {template!r}: {{{name}}} is not {{owner}}, {{task}} or"
            " {args.<name>} of an arg this job has"
        )

    key = _PLACEHOLDER.sub(value, template)
    if len(key) > 500:
        raise errors.OptionInvalid("concurrency_key comes to more than 500 characters")
    return key


def release_fitting(conn: SyncConnection, key: str | None, by: str) -> list[JobRow]:
    """Release the jobs held for `key` (None: for every key) that fit now, none of a
    paused queue; returns them, for the caller to enqueue."""
    why = f"concurrency key {key!r} has room" if key else "concurrency key has room"
    detail = jsontext.text({"by": by, "released": why})
    found = sql.rows(conn, sql.query("release_held"), key=key, detail=detail)
    return [JobRow.of(row) for row in found]


def release_held(writer: LedgerWriter, redis: Redis, settings: Settings, key: str) -> None:
    """A worker's part when a job of `key` ends: enqueue the held jobs that now fit (the
    reconciler is the fallback, so a failure is logged, not raised)."""
    try:
        rows = writer.write(release_fitting, key, "worker") or []
        broker.enqueue_known(redis, rows, settings.result_ttl_s)
    except (RedisError, *db.SYNC_ERRORS) as exc:
        log.warning(
            "concurrency key %r: held jobs not released (%s); the reconciler will", key, exc
        )
