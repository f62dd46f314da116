"""A per-client token bucket in Redis, shared by every API process: submits (one token a
job, a batch included), cancels, retries and uploads."""

import logging
import math

from redis import Redis
from redis.exceptions import RedisError

from service import errors
from service.settings import Settings

log = logging.getLogger(__name__)

# KEYS[1] the bucket; ARGV rate per second, burst, cost. Redis's clock, so processes agree.
# A request passes when the bucket holds its cost (or is full, for a batch larger than the
# burst) and then pays all of it: the bucket may go into debt, which later requests wait out.
_TAKE = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1e6
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens = tonumber(redis.call('HGET', KEYS[1], 't') or burst)
local since = tonumber(redis.call('HGET', KEYS[1], 'ts') or now)
tokens = math.min(burst, tokens + math.max(0, now - since) * rate)
local cost = tonumber(ARGV[3])
local need = math.min(cost, burst)
local wait = 0
if tokens >= need then tokens = tokens - cost else wait = (need - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil((burst - math.min(tokens, 0)) / rate) + 1)
return tostring(wait)
"""


def take(redis: Redis, client: str, settings: Settings, cost: int = 1) -> None:
    """Spend `cost` tokens (one a job) of `client`'s bucket, or raise RateLimited.

    If Redis cannot answer, the submit goes ahead: the ledger, not Redis, decides whether a
    job is accepted, and a Redis outage must not refuse work.
    """
    try:
        wait = float(
            redis.eval(
                _TAKE,
                1,
                f"jobsvc:ratelimit:{client}",
                settings.rate_limit_per_s,
                settings.rate_limit_burst,
                cost,
            )
        )
    except RedisError as exc:
        log.warning("rate limit not checked (%s); letting the submit through", exc)
        return
    if wait > 0:
        raise errors.TooManyRequests(max(1, math.ceil(wait)))
