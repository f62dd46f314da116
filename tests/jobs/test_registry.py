"""`@task` registration rules."""

import pytest

from service import errors, registry
from service.task_api import TaskArgs, task


@pytest.fixture(autouse=True)
def registry_restored(test_tasks: None) -> None:
    """Tasks registered here do not leak into other tests."""


class NoArgs(TaskArgs):
    pass


def test_a_task_takes_exactly_one_args_model() -> None:
    with pytest.raises(TypeError, match="exactly one TaskArgs parameter"):

        @task(name="two_params")
        def two(a: NoArgs, b: NoArgs) -> None: ...

    with pytest.raises(TypeError, match="exactly one TaskArgs parameter"):

        @task(name="plain_param")
        def plain(a: int) -> None: ...


def test_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(errors.TaskUnknown, match=r"unknown task 'nope'; known tasks: .*echo"):
        registry.get("nope")


def test_a_name_cannot_be_taken_twice() -> None:
    @task(name="echo_twin_a")
    def first(args: NoArgs) -> None: ...

    with pytest.raises(ValueError, match="registered twice"):

        @task(name="echo_twin_a")
        def second(args: NoArgs) -> None: ...
