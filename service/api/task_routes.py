"""`/tasks`: what can be submitted, with each task's args schema."""

from fastapi import APIRouter, Depends

from service import registry
from service.api.deps import current_client
from service.schemas import TaskOut, problems

router = APIRouter(tags=["tasks"])


@router.get(
    "/tasks",
    response_model=list[TaskOut],
    dependencies=[Depends(current_client)],
    responses=problems({401: "no API key, or not a live one", 503: "the ledger is unreachable"}),
)
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
