"""What the clients read from an answer: the API's `detail`, or what a body without one
says, and the example the client's own documentation gives."""

import ast
import re

import httpx
import pytest

from jobs.email import EmailArgs
from service import client
from service.client_shell import problem_lines
from service.client_wire import JobsError, result


def _refusal(response: httpx.Response) -> JobsError:
    with pytest.raises(JobsError) as refused:
        result(response)
    return refused.value


def test_an_error_answer_gives_the_apis_detail() -> None:
    refused = _refusal(httpx.Response(409, json={"detail": "already final"}))

    assert (refused.status_code, refused.detail) == (409, "already final")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"[1, 2]", "[1, 2]"),  # JSON, not an object
        (b'{"error": "boom"}', '{"error": "boom"}'),  # an object with no detail
        (b'{"detail": null}\n', '{"detail": null}'),
        (b"null", "null"),
        (b"  <html>Bad Gateway</html>\n", "<html>Bad Gateway</html>"),  # a proxy's page
        (b"", ""),
    ],
)
def test_an_error_answer_without_a_detail_gives_its_text(body: bytes, detail: str) -> None:
    refused = _refusal(httpx.Response(502, content=body))

    assert refused.detail == detail


def test_an_answer_with_no_message_reads_as_one() -> None:
    refused = _refusal(httpx.Response(500, content=b"\n"))

    assert problem_lines(refused.status_code, refused.detail) == [
        "the API answered 500: (no message)"
    ]


def test_the_clients_example_submits_args_its_task_takes() -> None:
    assert client.__doc__
    found = re.search(r'jobs\.submit\("send_email", (\{.*\})\)', client.__doc__)
    assert found, client.__doc__

    EmailArgs.model_validate(ast.literal_eval(found.group(1)))
