"""A Python client for the jobs API, synchronous (`JobsClient`) and asynchronous
(`AsyncJobsClient`), with the same methods:

    from service.client import JobsClient

    with JobsClient("http://127.0.0.1:8000", api_key="jobsvc_…") as jobs:
        job = jobs.submit("send_email", {"to": "a@example.com", "subject": "Hi", "body": "…"})
        done = jobs.wait(job["id"], timeout=120)   # long-polls; no tight loop
        print(done["status"], done["result"])

Errors from the API raise `JobsError` with its status code and `detail`.
"""

import builtins
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx

FINAL = frozenset({"finished", "failed", "canceled"})
LONG_POLL_S = 60.0  # the most the API holds one request


class JobsError(Exception):
    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class WaitTimeout(TimeoutError):
    """The job was not final within the time `wait` was given; `job` is its last state."""

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(f"job {job['id']} is still {job['status']}")
        self.job = job


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _submit_body(task: str, args: dict[str, Any] | None, options: dict[str, Any]) -> Any:
    return {"task": task, "args": args or {}, **options}


def _batch_body(jobs: list[dict[str, Any]], on_complete: dict[str, Any] | None) -> Any:
    return {"jobs": jobs, **({"on_complete": on_complete} if on_complete else {})}


def _schedule_body(
    name: str, cron: str, task: str, args: dict[str, Any] | None, fields: dict[str, Any]
) -> Any:
    return {"name": name, "cron": cron, "task": task, "args": args or {}, **fields}


def _bulk_body(filters: dict[str, Any]) -> Any:
    """Datetimes as ISO text; the other filters as they are."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in filters.items()}


def _key_header(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key else {}


def _json(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text
        raise JobsError(response.status_code, detail)
    return None if response.status_code == 204 else response.json()


def _slice(remaining: float | None) -> float:
    return LONG_POLL_S if remaining is None else max(0.0, min(LONG_POLL_S, remaining))


class _Events:
    """Server-Sent Events, line by line: `feed` returns (event, data) when one is complete."""

    def __init__(self) -> None:
        self.name, self.data = "", ""

    def feed(self, line: str) -> tuple[str, Any] | None:
        if line.startswith("event: "):
            self.name = line[len("event: ") :]
        elif line.startswith("data: "):
            self.data = line[len("data: ") :]
        elif line == "" and self.name:
            event, self.name = (self.name, json.loads(self.data)), ""
            return event
        return None


class JobsClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> "JobsClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def submit(
        self,
        task: str,
        args: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Submit a job; `options` are the other fields of `POST /jobs` (queue, delay_s,
        max_attempts, meta, callback_url, depends_on, on_parent_failure, ...)."""
        response = self._http.post(
            "/jobs",
            json=_submit_body(task, args, options),
            headers=_key_header(idempotency_key),
        )
        return _json(response)  # type: ignore[no-any-return]

    def submit_batch(
        self,
        jobs: builtins.list[dict[str, Any]],
        *,
        on_complete: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Submit up to 1,000 jobs at once, all or nothing: `{jobs, refs, on_complete}`.
        Jobs may name each other's `ref` in `depends_on` (a workflow); `on_complete` is one
        more job that runs when all of them are final."""
        response = self._http.post("/jobs/batch", json=_batch_body(jobs, on_complete))
        return _json(response)  # type: ignore[no-any-return]

    def get(self, job_id: str, *, wait: float = 0) -> dict[str, Any]:
        """The job; with `wait`, as soon as it is final or after `wait` seconds (≤ 60)."""
        params = {"wait": wait} if wait else {}
        response = self._http.get(f"/jobs/{job_id}", params=params, timeout=wait + 30)
        return _json(response)  # type: ignore[no-any-return]

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The job once it is final, by long-polls; WaitTimeout after `timeout` seconds."""
        deadline = None if timeout is None else _now() + timeout
        while True:
            remaining = None if deadline is None else deadline - _now()
            job = self.get(job_id, wait=_slice(remaining))
            if job["status"] in FINAL:
                return job
            if deadline is not None and _now() >= deadline:
                raise WaitTimeout(job)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return _json(self._http.post(f"/jobs/{job_id}/cancel"))  # type: ignore[no-any-return]

    def retry(self, job_id: str) -> dict[str, Any]:
        return _json(self._http.post(f"/jobs/{job_id}/retry"))  # type: ignore[no-any-return]

    def list(self, **filters: Any) -> dict[str, Any]:
        """One page: `{items, next_cursor}`; filters status, task, queue, parent (the
        jobs that depend on it), created_after, created_before, limit, cursor."""
        return _json(self._http.get("/jobs", params=filters))  # type: ignore[no-any-return]

    def events(self, job_id: str) -> builtins.list[dict[str, Any]]:
        return _json(self._http.get(f"/jobs/{job_id}/events"))  # type: ignore[no-any-return]

    def create_schedule(
        self, name: str, cron: str, task: str, args: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A cron schedule of yours; `fields`: timezone, queue, catch_up, paused."""
        body = _schedule_body(name, cron, task, args, fields)
        return _json(self._http.post("/schedules", json=body))  # type: ignore[no-any-return]

    def schedules(self) -> builtins.list[dict[str, Any]]:
        return _json(self._http.get("/schedules"))  # type: ignore[no-any-return]

    def schedule(self, schedule_id: str) -> dict[str, Any]:
        """The schedule, its next five ticks and the newest jobs it fired."""
        return _json(self._http.get(f"/schedules/{schedule_id}"))  # type: ignore[no-any-return]

    def update_schedule(self, schedule_id: str, **changes: Any) -> dict[str, Any]:
        """Change fields of a schedule (`paused=True` pauses it)."""
        response = self._http.patch(f"/schedules/{schedule_id}", json=changes)
        return _json(response)  # type: ignore[no-any-return]

    def delete_schedule(self, schedule_id: str) -> None:
        _json(self._http.delete(f"/schedules/{schedule_id}"))

    def cancel_many(self, **filters: Any) -> dict[str, Any]:
        """Cancel the jobs `GET /jobs`' filters select (status, task, queue, created_after,
        created_before; owner for an admin), up to `limit`; `dry_run=True` only counts."""
        return _json(self._http.post("/jobs/cancel", json=_bulk_body(filters)))  # type: ignore[no-any-return]

    def retry_many(self, **filters: Any) -> dict[str, Any]:
        """Retry the failed or canceled jobs the filters select, as `cancel_many`."""
        return _json(self._http.post("/jobs/retry", json=_bulk_body(filters)))  # type: ignore[no-any-return]

    def queues(self) -> builtins.list[dict[str, Any]]:
        """Every queue's state (an admin key)."""
        return _json(self._http.get("/queues"))  # type: ignore[no-any-return]

    def pause_queue(self, name: str) -> dict[str, Any]:
        return _json(self._http.post(f"/queues/{name}/pause"))  # type: ignore[no-any-return]

    def resume_queue(self, name: str) -> dict[str, Any]:
        return _json(self._http.post(f"/queues/{name}/resume"))  # type: ignore[no-any-return]

    def rate_limits(self) -> builtins.list[dict[str, Any]]:
        """Every limiter (an admin key)."""
        return _json(self._http.get("/rate-limits"))  # type: ignore[no-any-return]

    def set_rate_limit(self, name: str, rate: str | None) -> dict[str, Any]:
        """`rate`: N/s, N/min or N/h; None: no rate (it still backs off when told to)."""
        response = self._http.put(f"/rate-limits/{name}", json={"rate": rate})
        return _json(response)  # type: ignore[no-any-return]

    def delete_rate_limit(self, name: str) -> None:
        _json(self._http.delete(f"/rate-limits/{name}"))

    def stream(self, job_id: str) -> Iterator[tuple[str, Any]]:
        """The job's Server-Sent Events as (event, data) pairs, until the final `job`."""
        with self._http.stream("GET", f"/jobs/{job_id}/stream", timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                _json(response)
            events = _Events()
            for line in response.iter_lines():
                if (event := events.feed(line)) is not None:
                    yield event


class AsyncJobsClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> "AsyncJobsClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def submit(
        self,
        task: str,
        args: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        response = await self._http.post(
            "/jobs",
            json=_submit_body(task, args, options),
            headers=_key_header(idempotency_key),
        )
        return _json(response)  # type: ignore[no-any-return]

    async def submit_batch(
        self,
        jobs: builtins.list[dict[str, Any]],
        *,
        on_complete: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        response = await self._http.post("/jobs/batch", json=_batch_body(jobs, on_complete))
        return _json(response)  # type: ignore[no-any-return]

    async def get(self, job_id: str, *, wait: float = 0) -> dict[str, Any]:
        params = {"wait": wait} if wait else {}
        response = await self._http.get(f"/jobs/{job_id}", params=params, timeout=wait + 30)
        return _json(response)  # type: ignore[no-any-return]

    async def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109 - as JobsClient.wait: one deadline over several long-polls
        deadline = None if timeout is None else _now() + timeout
        while True:
            remaining = None if deadline is None else deadline - _now()
            job = await self.get(job_id, wait=_slice(remaining))
            if job["status"] in FINAL:
                return job
            if deadline is not None and _now() >= deadline:
                raise WaitTimeout(job)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return _json(await self._http.post(f"/jobs/{job_id}/cancel"))  # type: ignore[no-any-return]

    async def retry(self, job_id: str) -> dict[str, Any]:
        return _json(await self._http.post(f"/jobs/{job_id}/retry"))  # type: ignore[no-any-return]

    async def list(self, **filters: Any) -> dict[str, Any]:
        return _json(await self._http.get("/jobs", params=filters))  # type: ignore[no-any-return]

    async def events(self, job_id: str) -> builtins.list[dict[str, Any]]:
        return _json(await self._http.get(f"/jobs/{job_id}/events"))  # type: ignore[no-any-return]

    async def create_schedule(
        self, name: str, cron: str, task: str, args: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        body = _schedule_body(name, cron, task, args, fields)
        return _json(await self._http.post("/schedules", json=body))  # type: ignore[no-any-return]

    async def schedules(self) -> builtins.list[dict[str, Any]]:
        return _json(await self._http.get("/schedules"))  # type: ignore[no-any-return]

    async def schedule(self, schedule_id: str) -> dict[str, Any]:
        return _json(await self._http.get(f"/schedules/{schedule_id}"))  # type: ignore[no-any-return]

    async def update_schedule(self, schedule_id: str, **changes: Any) -> dict[str, Any]:
        response = await self._http.patch(f"/schedules/{schedule_id}", json=changes)
        return _json(response)  # type: ignore[no-any-return]

    async def delete_schedule(self, schedule_id: str) -> None:
        _json(await self._http.delete(f"/schedules/{schedule_id}"))

    async def cancel_many(self, **filters: Any) -> dict[str, Any]:
        return _json(await self._http.post("/jobs/cancel", json=_bulk_body(filters)))  # type: ignore[no-any-return]

    async def retry_many(self, **filters: Any) -> dict[str, Any]:
        return _json(await self._http.post("/jobs/retry", json=_bulk_body(filters)))  # type: ignore[no-any-return]

    async def queues(self) -> builtins.list[dict[str, Any]]:
        return _json(await self._http.get("/queues"))  # type: ignore[no-any-return]

    async def pause_queue(self, name: str) -> dict[str, Any]:
        return _json(await self._http.post(f"/queues/{name}/pause"))  # type: ignore[no-any-return]

    async def resume_queue(self, name: str) -> dict[str, Any]:
        return _json(await self._http.post(f"/queues/{name}/resume"))  # type: ignore[no-any-return]

    async def rate_limits(self) -> builtins.list[dict[str, Any]]:
        return _json(await self._http.get("/rate-limits"))  # type: ignore[no-any-return]

    async def set_rate_limit(self, name: str, rate: str | None) -> dict[str, Any]:
        response = await self._http.put(f"/rate-limits/{name}", json={"rate": rate})
        return _json(response)  # type: ignore[no-any-return]

    async def delete_rate_limit(self, name: str) -> None:
        _json(await self._http.delete(f"/rate-limits/{name}"))

    async def stream(self, job_id: str) -> AsyncIterator[tuple[str, Any]]:
        async with self._http.stream("GET", f"/jobs/{job_id}/stream", timeout=None) as response:
            if response.status_code >= 400:
                await response.aread()
                _json(response)
            events = _Events()
            async for line in response.aiter_lines():
                if (event := events.feed(line)) is not None:
                    yield event


def _now() -> float:
    return time.monotonic()
