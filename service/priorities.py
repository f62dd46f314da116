"""Priorities within a queue: 0 (the default) to 9, higher first (architecture.md,
"Priorities").

Each priority of a queue is an RQ list of its own, the RQ-native way: priority 0 is the
queue's own list (`default`), 1 to 9 are `default@p1` … `default@p9`. A worker listens to
a queue's lists highest first (RQ pops from the first list of its order that holds a job),
so a job of priority 9 submitted behind 1,000 jobs of priority 0 is the next one popped.

Low priorities are not starved: every `JOBS_PRIORITY_SHARE`-th pop of a worker (10th by
default) takes its queues' lists lowest first, so while higher priorities keep a queue's
workers busy, the lowest waiting priority still gets that share of their pops.
"""

import re
from collections.abc import Sequence

LEVELS = range(10)  # 0 … 9
HIGHEST = max(LEVELS)
_LIST = re.compile(r"(.+)@p([1-9])")

# KEYS: lists in the order to try. The first job id found, popped, with its list's key: the
# non-blocking pop of a worker in burst mode, one round trip whatever the number of lists.
POP_FIRST = """
for _, key in ipairs(KEYS) do
  local id = redis.call('LPOP', key)
  if id then return {key, id} end
end
return false
"""


def rq_name(queue: str, priority: int) -> str:
    """The RQ queue (list) that holds a queue's jobs of `priority`."""
    return queue if priority == 0 else f"{queue}@p{priority}"


def queue_of(name: str) -> str:
    """The queue an RQ queue name belongs to (its own name for priority 0)."""
    found = _LIST.fullmatch(name)
    return found[1] if found else name


def listening(queues: Sequence[str]) -> list[str]:
    """A worker's RQ queues for these queues, in its order: each queue's lists highest
    priority first, the queues in the order given."""
    return [rq_name(queue, p) for queue in queues for p in reversed(LEVELS)]


def lowest_first(names: Sequence[str]) -> list[str]:
    """The same lists, each queue's lowest priority first (the queues keep their order)."""
    order: dict[str, list[str]] = {}
    for name in names:
        order.setdefault(queue_of(name), []).append(name)
    return [name for group in order.values() for name in reversed(group)]
