"""How jobs and their outcomes travel through Redis: a request as the job's input hash (images as
raw bytes, the rest as JSON), and a worker's answer - a result, an engine refusal or a failure - as
JSON for the taskiq result backend, decoded back into the same result or exception, so the core
cannot tell a Redis worker from the local engine process."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from bot.queue import JobFailed
from engine.api import CompareRequest, EngineRequest, MakeupRequest, MakeupResult
from engine.errors import EngineError


def encode_request(request: EngineRequest) -> dict[str, bytes | str]:
    """The input hash of one job: images as raw bytes, the rest as JSON."""
    if isinstance(request, CompareRequest):
        return {"before": request.before, "after": request.after}
    fields: dict[str, bytes | str] = {
        "selfie": request.selfie,
        "params": json.dumps(
            {
                "look": request.look,
                "strength": request.strength,
                "regions": dict(request.regions) if request.regions is not None else None,
                "output_format": request.output_format,
                "mode": request.mode,
            }
        ),
    }
    if request.reference is not None:
        fields["reference"] = request.reference
    return fields


def decode_request(fields: dict[bytes, bytes]) -> EngineRequest:
    if b"before" in fields:
        return CompareRequest(before=fields[b"before"], after=fields[b"after"])
    params = json.loads(fields[b"params"])
    return MakeupRequest(selfie=fields[b"selfie"], reference=fields.get(b"reference"), **params)


def encode_result(result: MakeupResult) -> dict[str, Any]:
    """A worker's answer, as JSON the taskiq result backend can store."""
    return {
        "image": base64.b64encode(result.image).decode("ascii"),
        "width": result.width,
        "height": result.height,
        "faces": result.faces,
        "timings_ms": result.timings_ms,
        "paint_left_out": result.paint_left_out,
    }


def encode_error(error: EngineError | JobFailed) -> dict[str, Any]:
    """A refusal (bad input, an `EngineError`) or a failure (a `JobFailed`), by kind and user text."""
    refused = isinstance(error, EngineError)
    role = error.role if isinstance(error, EngineError) else None
    return {"error": error.kind, "message": error.user_message, "role": role, "refused": refused}


def _engine_error_classes(base: type[EngineError] = EngineError) -> Iterator[type[EngineError]]:
    yield base
    for subclass in base.__subclasses__():
        yield from _engine_error_classes(subclass)


def decode_outcome(outcome: dict[str, Any]) -> MakeupResult:
    """A worker's answer back into the result, or into the error it stands for (same type, same
    text), so the core cannot tell a Redis worker from the local engine process."""
    if "error" in outcome:
        if not outcome["refused"]:
            raise JobFailed(outcome["message"], kind=outcome["error"])
        error_class = next((c for c in _engine_error_classes() if c.kind == outcome["error"]), EngineError)
        raise error_class(outcome["message"], role=outcome["role"])
    return MakeupResult(
        image=base64.b64decode(outcome["image"]),
        width=outcome["width"],
        height=outcome["height"],
        faces=outcome["faces"],
        timings_ms=outcome["timings_ms"],
        # Absent in answers from workers older than look modes.
        paint_left_out=outcome.get("paint_left_out", False),
    )
