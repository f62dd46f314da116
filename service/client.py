"""A Python client for the jobs API, synchronous (`JobsClient`) and asynchronous
(`AsyncJobsClient`), with the same methods:

    from service.client import JobsClient

    with JobsClient("http://127.0.0.1:8000", api_key="jobsvc_…") as jobs:
        job = jobs.submit("send_email", {"to": ["a@example.com"], "subject": "Hi", "text": "…"})
        done = jobs.wait(job["id"], timeout=120)   # long-polls; no tight loop
        print(done["status"], done["result"])

Errors from the API raise `JobsError` with its status code and `detail`.
"""

import builtins
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from service import client_wire
from service.client_wire import FINAL, JobsError, WaitTimeout

__all__ = ["FINAL", "AsyncJobsClient", "JobsClient", "JobsError", "WaitTimeout"]


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
            base_url=base_url,
            headers=client_wire.headers(api_key),
            timeout=timeout,
            transport=transport,
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
            json=client_wire.submit_body(task, args, options),
            headers=client_wire.key_header(idempotency_key),
        )
        return client_wire.one(response)

    def submit_batch(
        self,
        jobs: builtins.list[dict[str, Any]],
        *,
        on_complete: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Submit up to 1,000 jobs at once, all or nothing: `{jobs, refs, on_complete}`.
        Jobs may name each other's `ref` in `depends_on` (a workflow); `on_complete` is one
        more job that runs when all of them are final."""
        response = self._http.post("/jobs/batch", json=client_wire.batch_body(jobs, on_complete))
        return client_wire.one(response)

    def get(self, job_id: str, *, wait: float = 0) -> dict[str, Any]:
        """The job; with `wait`, as soon as it is final or after `wait` seconds (≤ 60)."""
        params = {"wait": wait} if wait else {}
        response = self._http.get(f"/jobs/{job_id}", params=params, timeout=wait + 30)
        return client_wire.one(response)

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The job once it is final, by long-polls; WaitTimeout after `timeout` seconds."""
        deadline = None if timeout is None else _now() + timeout
        while True:
            remaining = None if deadline is None else deadline - _now()
            job = self.get(job_id, wait=client_wire.poll_slice(remaining))
            if job["status"] in FINAL:
                return job
            if deadline is not None and _now() >= deadline:
                raise WaitTimeout(job)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return client_wire.one(self._http.post(f"/jobs/{job_id}/cancel"))

    def retry(self, job_id: str) -> dict[str, Any]:
        return client_wire.one(self._http.post(f"/jobs/{job_id}/retry"))

    def list(self, **filters: Any) -> dict[str, Any]:
        """One page: `{items, next_cursor}`; filters status, task, queue, parent (the
        jobs that depend on it), created_after, created_before, limit, cursor."""
        return client_wire.one(self._http.get("/jobs", params=filters))

    def events(self, job_id: str) -> builtins.list[dict[str, Any]]:
        return client_wire.many(self._http.get(f"/jobs/{job_id}/events"))

    def tasks(self) -> builtins.list[dict[str, Any]]:
        """Every task: name, description, queue, timeout_s, max_attempts, args_schema."""
        return client_wire.many(self._http.get("/tasks"))

    def create_schedule(
        self, name: str, cron: str, task: str, args: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A cron schedule of yours; `fields`: timezone, queue, catch_up, paused."""
        body = client_wire.schedule_body(name, cron, task, args, fields)
        return client_wire.one(self._http.post("/schedules", json=body))

    def schedules(self) -> builtins.list[dict[str, Any]]:
        return client_wire.many(self._http.get("/schedules"))

    def schedule_id(self, schedule: str) -> str:
        """A schedule's id from its id or its name (the schedule methods take either)."""
        return (
            schedule
            if client_wire.UUID_TEXT.fullmatch(schedule)
            else client_wire.schedule_named(self.schedules(), schedule)
        )

    def schedule(self, schedule: str) -> dict[str, Any]:
        """The schedule (id or name), its next five ticks and the newest jobs it fired."""
        response = self._http.get(f"/schedules/{self.schedule_id(schedule)}")
        return client_wire.one(response)

    def update_schedule(self, schedule: str, **changes: Any) -> dict[str, Any]:
        """Change fields of a schedule (`paused=True` pauses it)."""
        response = self._http.patch(f"/schedules/{self.schedule_id(schedule)}", json=changes)
        return client_wire.one(response)

    def delete_schedule(self, schedule: str) -> None:
        client_wire.result(self._http.delete(f"/schedules/{self.schedule_id(schedule)}"))

    def cancel_many(self, **filters: Any) -> dict[str, Any]:
        """Cancel the jobs `GET /jobs`' filters select (status, task, queue, created_after,
        created_before; owner for an admin), up to `limit`; `dry_run=True` only counts.
        With no filter the API refuses (422): `all=True` selects every job on purpose."""
        return client_wire.one(self._http.post("/jobs/cancel", json=client_wire.bulk_body(filters)))

    def retry_many(self, **filters: Any) -> dict[str, Any]:
        """Retry the failed or canceled jobs the filters select, as `cancel_many`."""
        return client_wire.one(self._http.post("/jobs/retry", json=client_wire.bulk_body(filters)))

    def queues(self) -> builtins.list[dict[str, Any]]:
        """Every queue's state (an admin key)."""
        return client_wire.many(self._http.get("/queues"))

    def pause_queue(self, name: str) -> dict[str, Any]:
        return client_wire.one(self._http.post(f"/queues/{name}/pause"))

    def resume_queue(self, name: str) -> dict[str, Any]:
        return client_wire.one(self._http.post(f"/queues/{name}/resume"))

    def rate_limits(self) -> builtins.list[dict[str, Any]]:
        """Every limiter (an admin key)."""
        return client_wire.many(self._http.get("/rate-limits"))

    def set_rate_limit(self, name: str, rate: str | None) -> dict[str, Any]:
        """`rate`: N/s, N/min or N/h; None: no rate (it still backs off when told to)."""
        response = self._http.put(f"/rate-limits/{name}", json={"rate": rate})
        return client_wire.one(response)

    def delete_rate_limit(self, name: str) -> None:
        client_wire.result(self._http.delete(f"/rate-limits/{name}"))

    def stream(self, job_id: str) -> Iterator[tuple[str, Any]]:
        """The job's Server-Sent Events as (event, data) pairs, until the final `job`."""
        with self._http.stream("GET", f"/jobs/{job_id}/stream", timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                client_wire.result(response)
            events = client_wire.Events()
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
            base_url=base_url,
            headers=client_wire.headers(api_key),
            timeout=timeout,
            transport=transport,
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
            json=client_wire.submit_body(task, args, options),
            headers=client_wire.key_header(idempotency_key),
        )
        return client_wire.one(response)

    async def submit_batch(
        self,
        jobs: builtins.list[dict[str, Any]],
        *,
        on_complete: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        response = await self._http.post(
            "/jobs/batch", json=client_wire.batch_body(jobs, on_complete)
        )
        return client_wire.one(response)

    async def get(self, job_id: str, *, wait: float = 0) -> dict[str, Any]:
        params = {"wait": wait} if wait else {}
        response = await self._http.get(f"/jobs/{job_id}", params=params, timeout=wait + 30)
        return client_wire.one(response)

    async def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109 - as JobsClient.wait: one deadline over several long-polls
        deadline = None if timeout is None else _now() + timeout
        while True:
            remaining = None if deadline is None else deadline - _now()
            job = await self.get(job_id, wait=client_wire.poll_slice(remaining))
            if job["status"] in FINAL:
                return job
            if deadline is not None and _now() >= deadline:
                raise WaitTimeout(job)

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return client_wire.one(await self._http.post(f"/jobs/{job_id}/cancel"))

    async def retry(self, job_id: str) -> dict[str, Any]:
        return client_wire.one(await self._http.post(f"/jobs/{job_id}/retry"))

    async def list(self, **filters: Any) -> dict[str, Any]:
        return client_wire.one(await self._http.get("/jobs", params=filters))

    async def events(self, job_id: str) -> builtins.list[dict[str, Any]]:
        return client_wire.many(await self._http.get(f"/jobs/{job_id}/events"))

    async def tasks(self) -> builtins.list[dict[str, Any]]:
        return client_wire.many(await self._http.get("/tasks"))

    async def create_schedule(
        self, name: str, cron: str, task: str, args: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        body = client_wire.schedule_body(name, cron, task, args, fields)
        return client_wire.one(await self._http.post("/schedules", json=body))

    async def schedules(self) -> builtins.list[dict[str, Any]]:
        return client_wire.many(await self._http.get("/schedules"))

    async def schedule_id(self, schedule: str) -> str:
        return (
            schedule
            if client_wire.UUID_TEXT.fullmatch(schedule)
            else client_wire.schedule_named(await self.schedules(), schedule)
        )

    async def schedule(self, schedule: str) -> dict[str, Any]:
        response = await self._http.get(f"/schedules/{await self.schedule_id(schedule)}")
        return client_wire.one(response)

    async def update_schedule(self, schedule: str, **changes: Any) -> dict[str, Any]:
        path = f"/schedules/{await self.schedule_id(schedule)}"
        return client_wire.one(await self._http.patch(path, json=changes))

    async def delete_schedule(self, schedule: str) -> None:
        client_wire.result(
            await self._http.delete(f"/schedules/{await self.schedule_id(schedule)}")
        )

    async def cancel_many(self, **filters: Any) -> dict[str, Any]:
        return client_wire.one(
            await self._http.post("/jobs/cancel", json=client_wire.bulk_body(filters))
        )

    async def retry_many(self, **filters: Any) -> dict[str, Any]:
        return client_wire.one(
            await self._http.post("/jobs/retry", json=client_wire.bulk_body(filters))
        )

    async def queues(self) -> builtins.list[dict[str, Any]]:
        return client_wire.many(await self._http.get("/queues"))

    async def pause_queue(self, name: str) -> dict[str, Any]:
        return client_wire.one(await self._http.post(f"/queues/{name}/pause"))

    async def resume_queue(self, name: str) -> dict[str, Any]:
        return client_wire.one(await self._http.post(f"/queues/{name}/resume"))

    async def rate_limits(self) -> builtins.list[dict[str, Any]]:
        return client_wire.many(await self._http.get("/rate-limits"))

    async def set_rate_limit(self, name: str, rate: str | None) -> dict[str, Any]:
        response = await self._http.put(f"/rate-limits/{name}", json={"rate": rate})
        return client_wire.one(response)

    async def delete_rate_limit(self, name: str) -> None:
        client_wire.result(await self._http.delete(f"/rate-limits/{name}"))

    async def stream(self, job_id: str) -> AsyncIterator[tuple[str, Any]]:
        async with self._http.stream("GET", f"/jobs/{job_id}/stream", timeout=None) as response:
            if response.status_code >= 400:
                await response.aread()
                client_wire.result(response)
            events = client_wire.Events()
            async for line in response.aiter_lines():
                if (event := events.feed(line)) is not None:
                    yield event


def _now() -> float:
    return time.monotonic()
