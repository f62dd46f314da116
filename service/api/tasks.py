"""`/tasks`: what can be submitted, with each task's args schema."""

from fastapi import APIRouter

from jobs import registry
from service.schemas import TaskOut

router = APIRouter(tags=["tasks"])


@router.get("/tasks", response_model=list[TaskOut])
async def list_tasks() -> list[TaskOut]:
    return [
        TaskOut(
            name=t.name,
            description=t.description,
            queue=t.queue,
            timeout_s=t.timeout_s,
            max_attempts=t.max_attempts,
            args_schema=t.schema(),
        )
        for t in registry.all_tasks()
    ]
