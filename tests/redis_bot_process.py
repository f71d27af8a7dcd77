"""One bot process for tests/test_queue_redis.py: `facelab serve` itself (storage, the queue that
`queue.backend` names, the core) with a simulated chat platform whose users each ask for try-ons.

    python -m tests.redis_bot_process FIRST COUNT JOBS_PER_USER

Settings come from FACELAB_* variables. Users FIRST..FIRST+COUNT-1 each send JOBS_PER_USER try-ons;
job n's selfie is `selfie_width(n)` pixels wide, so a result's width says whose selfie it was made
from. Once every job is answered, prints one JSON line per message the users received and exits.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys

from PIL import Image
from pydantic import ConfigDict, Field

from bot.core import Core
from bot.ports import Adapter, Origin, PlatformSettings
from bot.settings import BotConfig
from facelab.commands.serve import serve
from facelab.settings import Settings
from tests.conftest import face_path
from tests.recording_messenger import RecordingMessenger

PLATFORM = "sim"
ANSWER_TIMEOUT_S = 240.0


def selfie_width(job_number: int) -> int:
    return 160 + job_number


def small_photo(name: str, width: int) -> bytes:
    image = Image.open(face_path(name)).convert("RGB")
    height = round(image.height * width / image.width)
    out = io.BytesIO()
    image.resize((width, height)).save(out, "JPEG", quality=90)
    return out.getvalue()


def job_origin(user: int, job_number: int) -> Origin:
    return Origin(PLATFORM, chat_id=f"chat{user}", user_id=f"user{user}", message_id=f"job{job_number}")


class SimulatedUsers:
    """A chat platform whose users send their try-ons as soon as the bot starts."""

    def __init__(self, core: Core, jobs: list[tuple[Origin, int]], stop: asyncio.Event) -> None:
        self.core, self.jobs, self.stop_bot = core, jobs, stop
        self.messenger = RecordingMessenger(platform=PLATFORM)
        core.add_messenger(self.messenger)
        self._run: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._run = asyncio.create_task(self._ask_and_report())

    async def stop(self) -> None:
        pass

    async def _ask_and_report(self) -> None:
        reference = small_photo("elegant_ref_02.png", 256)
        await asyncio.gather(
            *(
                self.core.on_pair(origin, small_photo("sm_source_01.jpg", selfie_width(n)), reference)
                for origin, n in self.jobs
            )
        )
        try:
            await self.messenger.wait_for(self._all_answered, timeout=ANSWER_TIMEOUT_S)
        finally:
            for sent in self.messenger.sent:
                if sent.kind != "action":
                    width = Image.open(io.BytesIO(sent.image)).width if sent.kind == "image" else None
                    line = {"kind": sent.kind, "chat": sent.chat_id, "reply_to": sent.reply_to}
                    print(json.dumps({**line, "text": sent.text, "width": width}), flush=True)
            self.stop_bot.set()

    def _all_answered(self) -> bool:
        # Answers reply to the job's message: an image, or a text that is not the "N ahead" notice.
        answered = {
            s.reply_to
            for s in self.messenger.sent
            if s.kind == "image" or (s.kind == "text" and "ahead of yours" not in s.text)
        }
        return all(origin.message_id in answered for origin, _ in self.jobs)


class SimulatedPlatform(PlatformSettings):
    """The simulated users' section: always configured, so the web playground does not start."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    jobs: list[tuple[Origin, int]] = Field(default_factory=list)
    stop: asyncio.Event = Field(default_factory=asyncio.Event)

    def configured(self) -> bool:
        return True

    def build(self, config: BotConfig, core: Core) -> Adapter:
        return SimulatedUsers(core, self.jobs, self.stop)


class SimulatedSettings(Settings):
    sim: SimulatedPlatform = SimulatedPlatform()  # the platform's name: PLATFORM


def main(first: int, count: int, per_user: int) -> int:
    stop = asyncio.Event()
    jobs = [
        (job_origin(user, user * per_user + k), user * per_user + k)
        for user in range(first, first + count)
        for k in range(per_user)
    ]

    return asyncio.run(serve(SimulatedSettings(sim=SimulatedPlatform(jobs=jobs, stop=stop)), stop))


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main(*(int(arg) for arg in sys.argv[1:4])))
