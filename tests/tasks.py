"""Tasks that exist only for tests; the `test_tasks` fixture registers them for one test."""

from jobs.registry import TaskArgs, task


class NoArgs(TaskArgs):
    pass


@task(name="nul_result", timeout_s=10)
def nul_result(args: NoArgs) -> str:
    """Return a string PostgreSQL's JSONB cannot hold."""
    return "before\x00after"
