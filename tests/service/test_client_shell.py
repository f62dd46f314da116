"""The shell commands' plumbing: the statuses and bulk filters they offer, and refusals as
readable lines."""

from service import bulk_filters
from service.client_cli_manage import bulk
from service.client_shell import STATUSES, problem_lines
from service.schemas import BulkIn
from service.tables import Status


def test_the_statuses_offered_are_the_ledgers() -> None:
    assert tuple(Status) == STATUSES


def test_the_bulk_filters_are_the_apis() -> None:
    """BulkIn's fields but what a bulk body says besides which jobs, in its order."""
    fields = [name for name in BulkIn.model_fields if name not in bulk_filters.NOT_FILTERS]

    assert tuple(fields) == bulk_filters.FILTERS
    assert set(bulk_filters.NOT_FILTERS) <= set(BulkIn.model_fields)


def test_jobsvc_bulk_offers_each_filter() -> None:
    options = [param.name for param in bulk.params]

    assert options[1 : 1 + len(bulk_filters.FILTERS)] == list(bulk_filters.FILTERS)


def test_a_batchs_refused_jobs_are_one_line_a_field() -> None:
    detail = [
        {"index": 0, "detail": "unknown task 'emial'; known tasks: echo"},
        {"index": 2, "detail": [{"loc": ["body", "args", "seconds"], "msg": "Field required"}]},
        {"on_complete": True, "detail": "no queue named 'x'"},
        {"loc": ["body", "jobs", 3, "depends_on", 0], "msg": "Input should be a string"},
    ]

    assert problem_lines(422, detail) == [
        "the API answered 422: the request is not valid:",
        "jobs[0]: unknown task 'emial'; known tasks: echo",
        "jobs[2].args.seconds: Field required",
        "on_complete: no queue named 'x'",
        "jobs[3].depends_on[0]: Input should be a string",
    ]


def test_any_other_answer_is_one_line() -> None:
    assert problem_lines(409, "already final") == ["the API answered 409: already final"]
    assert problem_lines(502, "upstream timed out\n(proxy 1.2)") == [
        "the API answered 502: upstream timed out"
    ]
    assert problem_lines(500, None) == ["the API answered 500: (no message)"]
    assert problem_lines(500, " \n") == ["the API answered 500: (no message)"]
