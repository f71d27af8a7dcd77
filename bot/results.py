"""What a result's buttons re-run from: its inputs and output, kept for `bot.result_cache_s`.

Two stores behind one protocol: in this process's memory (the default; lost in a restart), or in Redis
beside the Redis job queue (`RedisResults`), where a restarted bot process, or another one, still
finds them. Either way a result's photos are dropped when its time is up or its person sends /forget.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from engine.api import MakeupRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Inputs:
    """What a job was made from; a result's buttons re-run it with one thing changed."""

    selfie: bytes
    reference: bytes | None
    look: str | None
    strength: int  # 0-100
    regions: Mapping[str, float] | None = None
    mode: str = "natural"  # one of engine.api.MODES

    def request(self) -> MakeupRequest:
        return MakeupRequest(
            selfie=self.selfie,
            reference=self.reference,
            look=self.look,
            strength=self.strength / 100,
            regions=self.regions,
            mode=self.mode,
        )


@dataclass(frozen=True)
class StoredResult:
    person: tuple[str, str]  # (platform, user id): only they may press its buttons
    inputs: Inputs
    image: bytes


class ResultStore(Protocol):
    # True when results outlive this process (a restart does not lose them).
    survives_restart: bool

    @property
    def held_images(self) -> int:
        """Images this process holds in memory for results (inputs and outputs)."""
        ...

    async def put(self, result_id: str, result: StoredResult) -> None: ...

    async def get(self, result_id: str) -> StoredResult | None:
        """The result, or None once it expired, was forgotten, or cannot be read now."""
        ...

    async def forget(self, person: tuple[str, str]) -> None:
        """Drop every result of one person (/forget)."""
        ...


class MemoryResults:
    """Results in this process's memory. `clock` (monotonic seconds) decides expiry; a timer set
    `margin_s` past each deadline drops the photos, so memory does not wait for the next press."""

    survives_restart = False

    def __init__(self, keep_s: float, clock: Callable[[], float], margin_s: float = 1.0) -> None:
        self._keep_s = keep_s
        self._clock = clock
        self._margin_s = margin_s
        self._results: dict[str, tuple[StoredResult, float]] = {}

    @property
    def held_images(self) -> int:
        return sum(2 + (r.inputs.reference is not None) for r, _ in self._results.values())

    async def put(self, result_id: str, result: StoredResult) -> None:
        self._results[result_id] = (result, self._clock())
        asyncio.get_running_loop().call_later(self._keep_s + self._margin_s, self._drop_if_stale, result_id)

    async def get(self, result_id: str) -> StoredResult | None:
        kept = self._results.get(result_id)
        if kept is None or self._is_expired(kept[1]):
            return None
        return kept[0]

    async def forget(self, person: tuple[str, str]) -> None:
        for result_id in [rid for rid, (result, _) in self._results.items() if result.person == person]:
            del self._results[result_id]

    def _is_expired(self, created: float) -> bool:
        return self._clock() - created > self._keep_s

    def _drop_if_stale(self, result_id: str) -> None:
        kept = self._results.get(result_id)
        if kept is not None and self._is_expired(kept[1]):
            del self._results[result_id]


def encode_stored(result: StoredResult) -> dict[str, bytes | str]:
    """A result as a Redis hash: images as raw bytes, the rest as JSON."""
    inputs = result.inputs
    fields: dict[str, bytes | str] = {
        "selfie": inputs.selfie,
        "image": result.image,
        "params": json.dumps(
            {
                "person": list(result.person),
                "look": inputs.look,
                "strength": inputs.strength,
                "regions": dict(inputs.regions) if inputs.regions is not None else None,
                "mode": inputs.mode,
            }
        ),
    }
    if inputs.reference is not None:
        fields["reference"] = inputs.reference
    return fields


def decode_stored(fields: Mapping[bytes, bytes]) -> StoredResult:
    params: dict[str, Any] = json.loads(fields[b"params"])
    platform, user_id = params.pop("person")
    inputs = Inputs(selfie=fields[b"selfie"], reference=fields.get(b"reference"), **params)
    return StoredResult((platform, user_id), inputs, fields[b"image"])
