"""`deliver_callback`: POST a final job to the `callback_url` it was submitted with.

The reconciler submits one delivery (as the client `system`) each time a job with a
callback_url reaches a final state. The body is the job's JSON as `GET /jobs/{id}` shows it,
signed (see `service.signing`). Any answer but 2xx, or no answer, is retried with backoff
(JOBS_CALLBACK_ATTEMPTS, JOBS_CALLBACK_BACKOFF_S), so a receiver gets it at least once and
should ignore repeats (`X-Jobs-Delivery` names the delivery). Every try is recorded in the
job's events. The same SSRF guard as `call_webhook` applies.
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import Field

from service import context, keys, ledger, signing
from service.errors import PermanentError
from service.outbound import WebhookRefused, post, public_address
from service.registry import TaskArgs, task
from service.schemas import JobOut


class CallbackArgs(TaskArgs):
    job_id: UUID
    finished_at: datetime = Field(description="the finish this delivery is for")


class CallbackFailed(Exception):
    """The receiver did not take the callback (no answer, or not 2xx): retried."""


@task(
    name="deliver_callback",
    queue="callbacks",
    timeout_s=60,
    max_attempts=8,
    backoff_s=5,
    preload=("httpx",),
    internal=True,
)
def deliver_callback(args: CallbackArgs) -> dict[str, Any]:
    """POST the final job to its callback_url, signed; retried until a 2xx answer."""
    import httpx

    ctx = context.current()
    if ctx.owner != keys.SYSTEM_CLIENT:
        raise PermanentError("deliver_callback is submitted by the service itself")
    secret = ctx.settings.callback_secret
    if secret is None:
        raise PermanentError("JOBS_CALLBACK_SECRET is not set: callbacks cannot be signed")
    with ctx.engine().connect() as conn:
        job = ledger.job(conn, args.job_id)
    if job is None or job.finished_at != args.finished_at or job.callback_url is None:
        return {"skipped": "the job was deleted or has run again since"}
    url = job.callback_url
    body = JobOut.model_validate(job).model_dump_json().encode()
    headers = {
        "Content-Type": "application/json",
        signing.HEADER: signing.sign(secret.get_secret_value().encode(), body),
        "X-Jobs-Delivery": str(ctx.job_id),
    }
    outcome: dict[str, Any] = {"by": "callback", "url": url, "try": ctx.attempt}
    try:
        address = public_address(
            url,
            ctx.settings.webhook_allow_private,
            allow_loopback=ctx.settings.webhook_allow_loopback,
        )
        response = post(url, address, body, headers, ctx.settings.webhook_timeout_s)
    except WebhookRefused as exc:
        _note(ctx, args.job_id, {**outcome, "delivered": False, "error": str(exc)})
        raise
    except (OSError, httpx.HTTPError) as exc:
        _note(ctx, args.job_id, {**outcome, "delivered": False, "error": str(exc)[:500]})
        raise CallbackFailed(f"{url}: {exc}") from None
    delivered = 200 <= response.status_code < 300
    _note(
        ctx, args.job_id, {**outcome, "delivered": delivered, "status_code": response.status_code}
    )
    if not delivered:
        raise CallbackFailed(f"{url} answered {response.status_code}")
    return {"status_code": response.status_code}


def _note(ctx: context.JobContext, job_id: UUID, detail: dict[str, Any]) -> None:
    with ctx.engine().begin() as conn:
        ledger.note(conn, job_id, detail)
