"""Which queued rows has Redis lost? The reconciler's delivery check, O(1) per row.

A queued row is delivered while Redis holds its job: the id waits in the queue's list, or
a worker has popped it to the queue's intermediate list, and RQ's job hash says `queued`.
RQ's started registry does not count: a worker claims the row before RQ registers the
run, so a queued row found there is a dead attempt's leftover (its lease was rescued).
Searching a list of 100,000 ids for one is a scan, so the list is never searched. Per row
the check reads the job hash's status; per queue, the head of the list and the short
intermediate list. A row is lost when:

- Redis has no job hash for it, or the hash says anything but `queued` (flushed, restarted,
  failed over, or left from an earlier delivery);
- it is not popped and its queue is empty, or it was handed to Redis more than `margin`
  before the job at the head of its queue (ledger times, one clock): the list is first
  in, first out, so a job older than the head has been popped, by a worker that died (or
  was refused) before it claimed the row;
- a worker popped it to the intermediate list and had not started it at two checks in a
  row (a live worker starts within milliseconds; the ledger spaces checks by the margin).

A wrong guess costs one spare delivery, never a second run: the claim is the lock.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

from redis import Redis
from rq.job import JobStatus
from sqlalchemy import Connection

from service import broker, ledger
from service.broker import QueueView
from service.rows import JobRow


class DeliveryCheck:
    def __init__(self, redis: Redis, margin_s: float) -> None:
        self.redis = redis
        self.margin = timedelta(seconds=margin_s)
        self._popped_before: dict[UUID, str] = {}  # seen popped, not started: id -> queue

    def lost(self, conn: Connection, rows: Sequence[JobRow]) -> list[JobRow]:
        """The rows Redis no longer delivers; ids stranded in an intermediate list are
        taken out of it."""
        views = broker.queue_views(self.redis, {broker.rq_queue(row) for row in rows})
        states = broker.job_states(self.redis, [row.id for row in rows])
        heads = ledger.enqueued_at(conn, [h for v in views.values() if (h := _uuid(v.head))])
        self._popped_before = {
            job_id: name
            for job_id, name in self._popped_before.items()
            if name not in views or str(job_id) in views[name].popped
        }
        lost = []
        for row in rows:
            view = views[broker.rq_queue(row)]
            head = _uuid(view.head)
            head_at = heads.get(head) if head else None
            if not self._held(row, view, states[row.id], head_at):
                lost.append(row)
        for row in lost:
            if str(row.id) in views[broker.rq_queue(row)].popped:
                broker.forget_popped(self.redis, broker.rq_queue(row), row.id)
        return lost

    def _held(
        self, row: JobRow, view: QueueView, state: str | None, head_at: datetime | None
    ) -> bool:
        job_id = str(row.id)
        if job_id in view.popped:
            if self._popped_before.pop(row.id, None) is not None:
                return False  # stranded: its worker died between the pop and the claim
            self._popped_before[row.id] = broker.rq_queue(row)
            return True
        if state != JobStatus.QUEUED:
            return False
        if view.head is None:
            return False  # the queue is empty: a worker popped it and died
        if head_at is None:
            return True  # the head is not a ledger job: no time to compare with
        return (row.enqueued_at or row.created_at) >= head_at - self.margin


def _uuid(value: str | None) -> UUID | None:
    try:
        return UUID(value) if value else None
    except ValueError:
        return None
