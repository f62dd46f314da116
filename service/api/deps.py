"""Request dependencies shared by the routes."""

from typing import Annotated

from fastapi import Depends, Request
from redis import Redis

from service.settings import Settings, get_settings


def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


def current_client() -> str:
    """The client a request acts for; every job belongs to one (`owner`)."""
    return "anonymous"


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[Redis, Depends(get_redis)]
ClientDep = Annotated[str, Depends(current_client)]
