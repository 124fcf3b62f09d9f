"""Attempt deadlines: which attempts a sweep cancels, and when a cancellation is a timeout or goes on."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from bulkops.cloud.api import DevServerClient
from bulkops.cloud.auth import Credentials
from bulkops.cloud.deadlines import Deadlines
from bulkops.models import TIMEOUT, Reply


class FakeTask:
    """Counts cancel/uncancel like asyncio.Task does."""

    def __init__(self, cancelling: int = 0) -> None:
        self.requests = cancelling

    def cancel(self, msg: object = None) -> bool:
        self.requests += 1
        return True

    def uncancel(self) -> int:
        self.requests -= 1
        return self.requests

    def cancelling(self) -> int:
        return self.requests


def test_sweep_cancels_only_attempts_past_their_deadline() -> None:
    """An attempt is cancelled once its timeout has passed, never before, and only once."""
    deadlines = Deadlines(10.0)
    early, late = FakeTask(), FakeTask()
    a = deadlines.arm(early, now=100.0)
    b = deadlines.arm(late, now=105.0)
    assert deadlines.sweep(109.99) == 0 and early.requests == 0
    assert deadlines.sweep(110.0) == 1 and early.requests == 1 and late.requests == 0
    assert deadlines.sweep(112.0) == 0 and early.requests == 1  # not cancelled twice
    assert deadlines.release(a) is True and early.requests == 0  # a timeout: uncancelled, reported
    assert deadlines.release(b) is False and late.requests == 0  # finished in time: nothing to undo
    assert len(deadlines) == 0


def test_released_attempt_is_never_cancelled() -> None:
    """An attempt that finished before its deadline is forgotten: a later sweep leaves its task alone."""
    deadlines = Deadlines(1.0)
    task = FakeTask()
    deadlines.release(deadlines.arm(task, now=0.0))
    assert deadlines.sweep(5.0) == 0 and task.requests == 0


def test_other_cancellation_is_not_a_timeout() -> None:
    """When something else cancelled the task too, the deadline undoes only its own cancel and says so."""
    deadlines = Deadlines(1.0)
    task = FakeTask()
    attempt = deadlines.arm(task, now=0.0)
    deadlines.sweep(2.0)
    task.cancel()  # e.g. a cancel scope, at the same time
    assert deadlines.release(attempt) is False and task.requests == 1
    assert deadlines.release(attempt) is False and task.requests == 1  # release is idempotent


def test_sweep_leaves_a_task_already_being_cancelled_alone() -> None:
    """A task that something else is cancelling is forgotten by the sweep, not cancelled a second time."""
    deadlines = Deadlines(1.0)
    task = FakeTask()
    attempt = deadlines.arm(task, now=0.0)
    task.cancel()  # a cancel scope got there first
    assert deadlines.sweep(2.0) == 0 and task.requests == 1 and len(deadlines) == 0
    assert deadlines.release(attempt) is False and task.requests == 1


@pytest.mark.anyio
@pytest.mark.parametrize("scope_first", [True, False])
async def test_cancel_scope_keeps_its_cancellation_when_a_deadline_fires_with_it(scope_first: bool) -> None:
    """A scope and a deadline cancelling in the same loop turn: the scope still catches its cancellation.

    Scope first: the deadline leaves the task alone. Deadline first: the attempt is a timeout, and the
    scope's cancellation (which anyio delivers on its next turn) ends the caller at its next await.
    """
    deadlines = Deadlines(10.0)
    loop = asyncio.get_running_loop()
    timed_out = reached_after = False
    with anyio.CancelScope() as scope:
        attempt = deadlines.arm()

        def both() -> None:
            if scope_first:
                scope.cancel()
                deadlines.sweep(math.inf)
            else:
                deadlines.sweep(math.inf)
                scope.cancel()

        try:
            loop.call_soon(both)
            await asyncio.sleep(0)  # a bare yield: the task waits on no future when both land
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            if not deadlines.release(attempt):
                raise
            timed_out = True
        finally:
            deadlines.release(attempt)
        await anyio.sleep(1)  # the caller goes on after a timeout reply; the scope must still end it
        reached_after = True
    assert scope.cancelled_caught and not reached_after
    assert timed_out is not scope_first
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


@pytest.mark.anyio
@pytest.mark.parametrize("scope_first", [True, False])
async def test_in_a_task_group_a_scope_cancelled_with_a_deadline_ends_the_task(scope_first: bool) -> None:
    """Pins anyio's re-delivery (see the module docstring): a task in a group, waiting on a future, when the
    group's scope is cancelled and its deadline fires in the same loop turn, in either order, ends cancelled.

    Scope first: the sweep leaves the task alone and the scope's cancellation ends it. Deadline first: the
    attempt is a timeout, and anyio delivers the scope's cancellation again on a later turn, so the task's
    next await ends it. Should anyio stop re-delivering, or take the deadline's bare cancel for its own,
    `reached_after` turns True or the group raises.
    """
    deadlines = Deadlines(10.0)
    loop = asyncio.get_running_loop()
    armed = anyio.Event()
    outcome: list[str] = []
    reached_after = False

    async def attempt() -> None:
        nonlocal reached_after
        waiting = deadlines.arm()
        armed.set()
        try:
            try:
                await loop.create_future()  # an answer that never comes, as a socket read waits
            except asyncio.CancelledError:
                if not deadlines.release(waiting):
                    raise
                outcome.append("timeout")
            finally:
                deadlines.release(waiting)
            await anyio.sleep(1)  # the worker goes on after a timeout reply; the scope must end it here
            reached_after = True
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    async with anyio.create_task_group() as tg:
        tg.start_soon(attempt)
        await armed.wait()

        def both() -> None:
            if scope_first:
                tg.cancel_scope.cancel()
                deadlines.sweep(math.inf)
            else:
                deadlines.sweep(math.inf)
                tg.cancel_scope.cancel()

        loop.call_soon(both)
    assert outcome == (["cancelled"] if scope_first else ["timeout", "cancelled"])
    assert not reached_after and len(deadlines) == 0
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


@pytest.mark.anyio
async def test_a_deadline_in_a_task_group_is_a_timeout_reply_and_the_group_goes_on() -> None:
    """Deadlines firing on tasks inside a task group are timeout replies: the group is not cancelled, the
    timed-out tasks and their siblings carry on, and nothing is left cancelling."""
    replies: list[Reply] = []
    after: list[str] = []
    async with (
        _hanging_server() as url,
        DevServerClient(url, Credentials(ak="AK", sk="SK"), timeout=0.05) as client,
    ):

        async def attempt() -> None:
            replies.append(await client.stop("p1", IID))
            task = asyncio.current_task()
            assert task is not None and task.cancelling() == 0
            await anyio.sleep(0.01)  # a cancellation left pending would surface here
            after.append("attempt")

        async def sibling() -> None:
            await anyio.sleep(0.3)  # outlives every deadline: a cancelled group would end it
            after.append("sibling")

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(attempt)
            tg.start_soon(sibling)
        assert not tg.cancel_scope.cancel_called
    assert [r.error_code for r in replies] == [TIMEOUT] * 3
    assert sorted(after) == ["attempt"] * 3 + ["sibling"]


def test_period_scales_with_the_timeout() -> None:
    """A deadline fires within a twentieth of the timeout, between 5 ms and 250 ms late."""
    assert Deadlines(30.0).period == 0.25
    assert Deadlines(1.0).period == pytest.approx(0.05)
    assert Deadlines(0.01).period == 0.005
    with pytest.raises(ValueError):
        Deadlines(0)


@asynccontextmanager
async def _hanging_server() -> AsyncIterator[str]:
    """A loopback server that reads each request and never answers, until the block ends."""
    done = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await done.wait()
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        done.set()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.01)  # let the handlers close their sockets


IID = "00000000-0000-4000-8000-000000000001"


@pytest.mark.anyio
async def test_timeout_leaves_the_task_usable() -> None:
    """A timed-out attempt is a bulkops.timeout reply, and the worker's task is not left cancelling."""
    async with (
        _hanging_server() as url,
        DevServerClient(url, Credentials(ak="AK", sk="SK"), timeout=0.1) as client,
    ):
        started = anyio.current_time()
        reply = await client.stop("p1", IID)
        took = anyio.current_time() - started
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await anyio.sleep(0.01)  # a cancellation left pending would surface here
    assert reply.http_status is None and reply.error_code == TIMEOUT
    assert 0.1 <= took < 1.0


@pytest.mark.anyio
async def test_outer_cancellation_still_cancels() -> None:
    """A cancel scope that fires while an attempt is timing out cancels the caller; it is not a reply."""
    replies = []
    async with (
        _hanging_server() as url,
        DevServerClient(url, Credentials(ak="AK", sk="SK"), timeout=0.05) as client,
    ):
        with anyio.move_on_after(0.05) as scope:
            replies.append(await client.stop("p1", IID))
            await anyio.sleep(5)  # reached only if the scope's cancel were lost
    assert scope.cancelled_caught
    assert all(r.error_code == TIMEOUT for r in replies)


def test_client_reused_under_a_new_event_loop_still_times_out() -> None:
    """A client kept across two event loops (two `anyio.run`s) keeps timing attempts out in each."""
    import socket

    listener = socket.socket()  # accepts connections in its backlog, never answers
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    client = DevServerClient(url, Credentials(ak="AK", sk="SK"), timeout=0.1)

    async def once() -> Reply:
        async with client:
            return await client.stop("p1", IID)

    try:
        replies = [anyio.run(once) for _ in range(2)]
    finally:
        listener.close()
    assert [r.error_code for r in replies] == [TIMEOUT, TIMEOUT]
