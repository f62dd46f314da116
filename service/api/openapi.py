"""The OpenAPI document: FastAPI's, made exact about what `POST /jobs` accepts.

The route validates a generic body and then the task's own args model. The document says
the same thing precisely: one body variant per task (`task` fixed, `args` that task's
model) and the caps from the settings, so /docs shows each task's args and a schema-driven
client or fuzzer can build requests the API accepts.
"""

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from service import registry
from service.api.deps import key_unless
from service.settings import Settings

_REF = "#/components/schemas/{model}"


def install(app: FastAPI, url: str) -> None:
    """Serve the document at `url`: openly, or to keyed requests only when
    JOBS_PUBLIC_DOCS=false."""

    @app.get(
        url,
        include_in_schema=False,
        dependencies=[key_unless(lambda settings: settings.public_docs)],
    )
    async def openapi_document() -> JSONResponse:
        return JSONResponse(app.openapi())


def document(app: FastAPI, settings: Settings) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    components = schema["components"]["schemas"]
    generic = components.pop("JobIn")
    _apply_caps(generic["properties"], settings)
    generic["properties"]["queue"] = {"enum": registry.queues(), "description": "a known queue"}
    generic["not"] = {"required": ["delay_s", "run_at"]}  # one start time at most

    variants, mapping, examples = [], {}, {}
    for task in registry.all_tasks():
        name = "".join(part.capitalize() for part in task.name.split("_"))
        args = task.args_model.model_json_schema(ref_template=_REF)
        components.update(args.pop("$defs", {}))
        components[f"{name}Args"] = {
            **args,
            "title": f"{name}Args",
            "description": task.description,
        }
        variant = copy.deepcopy(generic)
        variant["title"] = f"{name}Job"
        variant["properties"]["task"] = {"enum": [task.name], "description": task.description}
        variant["properties"]["args"] = {"$ref": _REF.format(model=f"{name}Args")}
        if args.get("required"):
            variant["required"] = ["task", "args"]
        else:
            variant["properties"]["args"]["default"] = {}
        components[f"{name}Job"] = variant
        ref = _REF.format(model=f"{name}Job")
        variants.append({"$ref": ref})
        mapping[task.name] = ref
        examples[task.name] = {
            "summary": task.description,
            "value": {"task": task.name, "args": (args.get("examples") or [{}])[0]},
        }

    body = schema["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    body["schema"] = {
        "oneOf": variants,
        "discriminator": {"propertyName": "task", "mapping": mapping},
    }
    body["examples"] = examples
    app.openapi_schema = schema
    return schema


def _apply_caps(properties: dict[str, Any], settings: Settings) -> None:
    caps = {
        "timeout_s": settings.max_timeout_s,
        "max_attempts": settings.max_attempts_cap,
        "backoff_s": settings.max_backoff_s,
        "delay_s": settings.max_delay_s,
    }
    for field, cap in caps.items():
        for option in properties[field].get("anyOf", [properties[field]]):
            if option.get("type") in ("integer", "number"):
                option["maximum"] = cap
