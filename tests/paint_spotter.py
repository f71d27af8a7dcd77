"""A job runner for chat tests of look modes: the real engine, with the engine contract's
`paint_left_out` reported for one chosen reference photo, as if it wore face paint."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from bot.queue import JobRunner
from engine.api import CompareRequest, EngineRequest, MakeupResult


@dataclass
class PaintSpotter:
    """Runs every request on `runner`; a natural-mode try-on whose reference is exactly `painted`
    comes back with paint_left_out set. `modes` lists the mode each request arrived with."""

    runner: JobRunner
    painted: bytes
    modes: list[str] = field(default_factory=list)

    async def run(self, request: EngineRequest) -> MakeupResult:
        if isinstance(request, CompareRequest):
            return await self.runner.run(request)
        self.modes.append(request.mode)
        result = await self.runner.run(request)
        left_out = request.reference == self.painted and request.mode == "natural"
        return replace(result, paint_left_out=left_out)
