"""Tasks that exist only for tests; the `test_tasks` fixture registers them for one test."""

from service.task_api import TaskArgs, task


class NoArgs(TaskArgs):
    pass


@task(name="nul_result", timeout_s=10)
def nul_result(args: NoArgs) -> str:
    """Return a string PostgreSQL's JSONB cannot hold."""
    return "before\x00after"


@task(name="set_result", timeout_s=10)
def set_result(args: NoArgs) -> object:
    """Return a set, which JSON cannot hold."""
    return {1, 2}


@task(name="raise_unstorable", timeout_s=10)
def raise_unstorable(args: NoArgs) -> None:
    """Raise with a message PostgreSQL cannot store as is (NUL, a lone surrogate) and too
    long to keep whole."""
    raise RuntimeError("before\x00after \ud800 " + "x" * 50_000)
