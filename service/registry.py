"""The task registry: `@task` turns a function of one pydantic args model into a named task.

Task modules are loaded by name from the settings (JOBS_TASK_MODULES), beside the service's
own system tasks (`SYSTEM_TASK_MODULES`); the service never imports a task module itself.

The decorated name stays a plain module-level function that takes the args as keyword
arguments, so RQ stores it by its dotted name (rq-dashboard shows the real task) and a
worker imports exactly the function that the API enqueued.
"""

import functools
import importlib
import inspect
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from service import errors


class TaskArgs(BaseModel):
    """Base for a task's args model: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


A = TypeVar("A", bound=TaskArgs)


@dataclass(frozen=True)
class Task:
    name: str
    func: Callable[..., Any]
    args_model: type[TaskArgs]
    queue: str
    timeout_s: int
    max_attempts: int
    backoff_s: float
    description: str
    preload: tuple[str, ...] = ()  # heavy modules the task imports when it runs
    internal: bool = False  # submitted by the service itself, never through the API
    unique_for_s: float | None = None  # its jobs are unique jobs (service.uniqueness)
    concurrency_key: str | None = None  # a template (service.concurrency)
    max_concurrency: int | None = None
    # the named limiter its starts count against (service.limiters): a name, or a function
    # of the job's args giving one (or None: not limited)
    rate_limit: str | Callable[[dict[str, Any]], str | None] | None = None
    priority: int = 0  # 0 to 9, higher first within its queue (service.priorities)

    def validate(self, args: dict[str, Any]) -> dict[str, Any]:
        """The args as the task will see them (defaults filled in), or ArgsInvalid."""
        try:
            return self.args_model.model_validate(args).model_dump(mode="json")
        except ValidationError as exc:
            raise errors.ArgsInvalid(self.name, exc) from exc

    def schema(self) -> dict[str, Any]:
        return _schema(self.args_model)


@functools.cache
def _schema(model: type[TaskArgs]) -> dict[str, Any]:
    return model.model_json_schema()


_tasks: dict[str, Task] = {}


def task(
    *,
    name: str | None = None,
    queue: str = "default",
    timeout_s: int = 180,
    max_attempts: int = 1,
    backoff_s: float = 5.0,
    preload: tuple[str, ...] = (),
    internal: bool = False,
    unique_for_s: float | None = None,
    concurrency_key: str | None = None,
    max_concurrency: int | None = None,
    rate_limit: str | Callable[[dict[str, Any]], str | None] | None = None,
    priority: int = 0,
) -> Callable[[Callable[[A], Any]], Callable[..., Any]]:
    """Register `fn(args: SomeArgs)` as a task; the returned function takes the args as kwargs.

    `preload` names heavy modules the task imports inside its body: the API never loads
    them, and a worker imports them once at start only if it serves the task's queue (so
    a forking worker's horses find them loaded, and other workers stay small to fork).
    `unique_for_s` makes its jobs unique by default (a submit may still give its own), and
    `concurrency_key` with `max_concurrency` limits how many of them run at once;
    `rate_limit` names the limiter whose rate their starts keep to (or is a function of
    the args giving its name: one limiter per host of a URL, say); `priority` (0 to 9,
    higher first) orders its jobs within their queue unless a submit gives its own.
    """

    def register(fn: Callable[[A], Any]) -> Callable[..., Any]:
        model = _args_model(fn)
        task_name = name or fn.__name__

        @functools.wraps(fn)
        def run(**kwargs: Any) -> Any:
            return _json_result(fn(model.model_validate(kwargs)))  # type: ignore[arg-type]

        if priority not in range(10):
            raise ValueError(f"task {task_name!r}: priority {priority} is not 0 to 9")
        if task_name in _tasks and _tasks[task_name].func.__qualname__ != fn.__qualname__:
            raise ValueError(f"task {task_name!r} is registered twice")
        _tasks[task_name] = Task(
            name=task_name,
            func=run,
            args_model=model,
            queue=queue,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            backoff_s=backoff_s,
            description=inspect.getdoc(fn) or "",
            preload=preload,
            internal=internal,
            unique_for_s=unique_for_s,
            concurrency_key=concurrency_key,
            max_concurrency=max_concurrency,
            rate_limit=rate_limit,
            priority=priority,
        )
        return run

    return register


def function_name(task: Task) -> str:
    """The name RQ records for the task's function (`module.qualname`)."""
    return f"{task.func.__module__}.{task.func.__qualname__}"


def by_function(name: str) -> Task | None:
    """The task whose function RQ records as `name`, if one is registered."""
    for task in _tasks.values():
        if function_name(task) == name:
            return task
    return None


def _json_result(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise errors.ResultInvalid(f"the task's result is not JSON: {exc}") from None
    return value


def _args_model(fn: Callable[..., Any]) -> type[TaskArgs]:
    params = list(inspect.signature(fn, eval_str=True).parameters.values())
    if len(params) != 1 or not (
        inspect.isclass(params[0].annotation) and issubclass(params[0].annotation, TaskArgs)
    ):
        raise TypeError(f"task {fn.__qualname__} must take exactly one TaskArgs parameter")
    model: type[TaskArgs] = params[0].annotation
    return model


# The service's own work: completion callbacks and retention, submitted by the reconciler.
SYSTEM_TASK_MODULES = ("service.callbacks", "service.retention")


def load(modules: Iterable[str]) -> None:
    """Import the modules that define tasks (they register themselves), after the service's
    own."""
    for module in (*SYSTEM_TASK_MODULES, *modules):
        importlib.import_module(module)


def preload(queue_names: Iterable[str]) -> None:
    """Import the heavy modules of the tasks on these queues (a worker, at start)."""
    wanted = set(queue_names)
    for t in _tasks.values():
        if t.queue in wanted:
            for module in t.preload:
                importlib.import_module(module)


def get(name: str) -> Task:
    try:
        return _tasks[name]
    except KeyError:
        raise errors.TaskUnknown(name, sorted(_tasks)) from None


def submittable(name: str) -> Task:
    """A task clients may submit (internal ones are unknown to them)."""
    found = _tasks.get(name)
    if found is None or found.internal:
        raise errors.TaskUnknown(name, [t.name for t in all_tasks()])
    return found


def all_tasks() -> list[Task]:
    """The tasks clients may submit, by name."""
    return sorted((t for t in _tasks.values() if not t.internal), key=lambda t: t.name)


def names() -> list[str]:
    return sorted(_tasks)


def queues() -> list[str]:
    return sorted({t.queue for t in _tasks.values()})
