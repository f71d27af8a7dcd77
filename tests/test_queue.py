"""The in-process job queue: order, positions, caps, outcomes and shutdown.

The runner behind the queue is a gate the test opens job by job, so positions can be checked at
exact moments; the real engine process behind the queue is covered in test_engine_process.py and
test_core.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.queue import (
    Job,
    JobFailed,
    LocalJobQueue,
    QueueClosed,
    QueueFull,
    Ticket,
    UserQueueCapReached,
)
from engine.api import MakeupRequest, MakeupResult
from engine.errors import NoFaceError


class GatedRunner:
    """Runs a job when the test releases it; echoes the selfie bytes back as the result."""

    def __init__(self) -> None:
        self.started: asyncio.Queue[MakeupRequest] = asyncio.Queue()
        self._release: asyncio.Queue[Exception | None] = asyncio.Queue()
        self.ran: list[bytes] = []

    async def run(self, request: MakeupRequest) -> MakeupResult:
        await self.started.put(request)
        error = await self._release.get()
        if error is not None:
            raise error
        self.ran.append(request.selfie)
        return MakeupResult(image=request.selfie, width=1, height=1, faces=1)

    def release(self, error: Exception | None = None) -> None:
        self._release.put_nowait(error)


def make_job(name: str, user: str = "u1") -> Job:
    return Job(
        id=f"job-{name}",
        platform="test",
        chat_id="c1",
        user_id=user,
        request=MakeupRequest(selfie=name.encode(), look="natural"),
    )


@pytest.fixture
def runner() -> GatedRunner:
    return GatedRunner()


@pytest.fixture
async def queue(runner: GatedRunner) -> AsyncIterator[LocalJobQueue]:
    queue = LocalJobQueue(runner, max_size=3, per_user=2)
    await queue.start()
    yield queue
    for _ in range(10):
        runner.release()
    await queue.close(drain_timeout_s=1.0)


async def next_started(runner: GatedRunner) -> bytes:
    return (await asyncio.wait_for(runner.started.get(), 5)).selfie


async def test_positions_are_reported_on_submit_and_move_up(
    queue: LocalJobQueue, runner: GatedRunner
) -> None:
    first = await queue.submit(make_job("a", user="u1"))
    assert await next_started(runner) == b"a"
    second = await queue.submit(make_job("b", user="u2"))
    third = await queue.submit(make_job("c", user="u3"))

    assert (first.position, second.position, third.position) == (0, 1, 2)
    assert [await queue.position(t.job.id) for t in (first, second, third)] == [0, 1, 2]

    runner.release()
    assert (await first.result()).image == b"a"
    assert await next_started(runner) == b"b"
    assert [await queue.position(t.job.id) for t in (first, second, third)] == [None, 0, 1]
    assert queue.depth == 1


async def test_the_next_job_is_handed_over_early_but_starts_when_the_running_one_ends(
    queue: LocalJobQueue, runner: GatedRunner
) -> None:
    first = await queue.submit(make_job("a", user="u1"))
    second = await queue.submit(make_job("b", user="u2"))
    third = await queue.submit(make_job("c", user="u3"))
    assert [await next_started(runner), await next_started(runner)] == [b"a", b"b"]
    await asyncio.sleep(0.05)
    assert runner.started.empty()  # no more than the running job and the next are handed over

    assert first.started_at is not None and second.started_at is None
    assert (queue.depth, await queue.position(second.job.id)) == (2, 1)
    runner.release()
    await first.result()
    assert second.started_at is not None and second.started_at >= first.finished_at  # type: ignore[operator]
    assert await next_started(runner) == b"c"  # handed over behind b
    assert third.started_at is None


async def test_jobs_run_in_submission_order_and_each_ticket_gets_its_own_result(
    queue: LocalJobQueue, runner: GatedRunner
) -> None:
    tickets = [await queue.submit(make_job(name, user=name)) for name in "xyz"]
    for _ in tickets:
        runner.release()
    results = [await ticket.result() for ticket in tickets]
    assert [result.image for result in results] == [b"x", b"y", b"z"]
    assert runner.ran == [b"x", b"y", b"z"]
    assert all(t.started_at is not None and t.finished_at is not None for t in tickets)


async def test_per_user_cap_counts_waiting_and_running_jobs(
    queue: LocalJobQueue, runner: GatedRunner
) -> None:
    running = await queue.submit(make_job("a", user="u1"))
    await next_started(runner)
    await queue.submit(make_job("b", user="u1"))

    with pytest.raises(UserQueueCapReached) as refused:
        await queue.submit(make_job("c", user="u1"))
    assert "try again" in refused.value.user_message
    assert refused.value.kind == "user_cap"
    # Someone else is not affected, and the same user id on another platform is someone else.
    await queue.submit(make_job("d", user="u2"))
    await queue.submit(Job("job-e", "other", "c1", "u1", MakeupRequest(selfie=b"e", look="natural")))

    runner.release()
    await running.result()
    await queue.submit(make_job("f", user="u1"))  # a slot came free


async def test_full_queue_refuses_with_a_message(queue: LocalJobQueue, runner: GatedRunner) -> None:
    await queue.submit(make_job("a", user="u1"))
    await next_started(runner)  # running, so it no longer counts as waiting
    for name in "bcd":
        await queue.submit(make_job(name, user=name))
    with pytest.raises(QueueFull) as refused:
        await queue.submit(make_job("e", user="e"))
    assert "busy" in refused.value.user_message
    assert await queue.position("job-e") is None


async def test_engine_refusals_and_runner_bugs_reach_the_ticket(
    queue: LocalJobQueue, runner: GatedRunner
) -> None:
    refused = await queue.submit(make_job("a", user="u1"))
    broken = await queue.submit(make_job("b", user="u2"))
    fine = await queue.submit(make_job("c", user="u3"))
    runner.release(NoFaceError("I can't find a face in your selfie.", role="selfie"))
    runner.release(RuntimeError("a bug in the runner"))
    runner.release()

    with pytest.raises(NoFaceError) as no_face:
        await refused.result()
    assert no_face.value.role == "selfie"
    with pytest.raises(JobFailed) as failed:
        await broken.result()
    assert failed.value.kind == "internal"
    assert (await fine.result()).image == b"c"  # the dispatcher survived both


async def test_close_drains_jobs_that_finish_in_time(runner: GatedRunner) -> None:
    queue = LocalJobQueue(runner, max_size=5, per_user=5)
    await queue.start()
    tickets = [await queue.submit(make_job(name)) for name in "ab"]
    for _ in tickets:
        runner.release()
    assert await queue.close(drain_timeout_s=5.0) == []
    assert [(await t.result()).image for t in tickets] == [b"a", b"b"]


async def test_close_fails_and_reports_every_unfinished_job(runner: GatedRunner) -> None:
    queue = LocalJobQueue(runner, max_size=5, per_user=5)
    await queue.start()
    tickets: list[Ticket] = [await queue.submit(make_job(name)) for name in "abc"]
    await next_started(runner)  # "a" is running and never released

    left = await queue.close(drain_timeout_s=0.2)

    assert [job.id for job in left] == ["job-a", "job-b", "job-c"]
    for ticket in tickets:
        with pytest.raises(JobFailed) as failed:
            await ticket.result()
        assert failed.value.kind == "shutdown"
        assert "restarting" in failed.value.user_message
        await asyncio.wait_for(ticket.started(), 1)  # nobody is left waiting for a start
    with pytest.raises(QueueClosed):
        await queue.submit(make_job("d"))
