"""A stock RQ worker (the class named on the command line, no ledger) for the baselines.

Like any application using RQ, it imports its task module first, so its work horses do not
import it again for every job: the comparison is worker against worker.

    python bench/stock_worker.py rq.worker.Worker REDIS_URL [--burst]
"""

import sys

from redis import Redis
from rq.serializers import JSONSerializer
from rq.utils import import_attribute

import jobs.builtin  # noqa: F401  (the tasks, loaded once as an application would)

if __name__ == "__main__":
    worker_class = import_attribute(sys.argv[1])
    worker = worker_class(
        ["default"], connection=Redis.from_url(sys.argv[2]), serializer=JSONSerializer
    )
    worker.work(burst="--burst" in sys.argv, logging_level="WARNING")
