"""Compact JSON text of a value the service stores: orjson (a twentieth of the standard
library's time for a job's args), or the standard library for what orjson refuses (an
integer past 64 bits). Both write UTF-8 without escaping non-ASCII; their numbers may
differ in form (`1e-7` or `1e-07`), not in value."""

import json

import orjson


def dumps(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def text(value: object) -> str:
    """`dumps` as text: how JSON goes into a statement (cast to jsonb there)."""
    return dumps(value).decode()
