"""The filters of a bulk cancel or retry (`POST /jobs/cancel`, `POST /jobs/retry`): the
fields of `service.schemas.BulkIn` that select jobs, in its order, apart from `NOT_FILTERS`.

Named here, not read from BulkIn, so that `jobsvc bulk` knows them without loading pydantic
or the engine; a test holds them equal to BulkIn's fields.
"""

FILTERS = ("status", "task", "queue", "created_after", "created_before", "owner")
NOT_FILTERS = ("all", "dry_run", "limit")  # what a bulk body says besides which jobs
