"""The values every room of the engine shares: the job (one input row on its way to a final record),
the client the engine sends through, and the run's flow signals.

Imports only `models` and `operations` (and anyio): every other engine module may import this one.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeAlias

import anyio

from bulkops.models import Reply, Result, Target
from bulkops.operations import STOP, Operation

#: What `stop_instances` reads: rows to send (`Target`) and rows already decided (`Result`).
Targets: TypeAlias = Iterable[Target | Result] | AsyncIterable[Target | Result]


class Client(Protocol):
    """What the engine needs of a DevServer client (`api.DevServerClient`, or a test double).

    `act(op, project_id, id)` sends one operation. A client written before operations were data, with
    `stop()` and `show()` only, still runs a stop (see `sender`).
    """

    async def act(self, op: Operation, project_id: str, instance_id: str) -> Reply: ...

    async def show(self, project_id: str, instance_id: str) -> Reply: ...


Send: TypeAlias = Callable[[str, str], Awaitable[Reply]]


def sender(client: object, op: Operation) -> Send:
    """`client`'s call for `op`, bound once per run: `act(op, ...)`, or a stop-only client's `stop()`."""
    act = getattr(client, "act", None)
    if act is not None:
        return partial(act, op)
    stop = getattr(client, "stop", None)
    if op is STOP and stop is not None:
        return stop  # type: ignore[no-any-return]
    raise TypeError(f"the client has no act() to {op.name} with")


@dataclass(slots=True, eq=False)
class Job:
    """One row on its way to its final record: what was sent and answered so far."""

    target: Target
    project_id: str
    attempts: int = 0
    stop_attempts: int = 0
    failures: int = 0
    first_at: float | None = None
    last: Reply | None = None
    polling: bool = False
    poll_started: float = 0.0
    polls: int = 0
    passed: bool = False
    """The instance was seen in the operation's transitional status (what a reboot's --wait needs)."""


class Flow:
    """The run's signals: rows in flight, whether it winds down, and one wake-up for the dispatcher."""

    __slots__ = ("_wake", "inflight", "winding_down")

    def __init__(self) -> None:
        self.inflight = 0
        self.winding_down = False
        self._wake = anyio.Event()

    def notify(self) -> None:
        """Something changed (a row came in, a row finished): the dispatcher looks again."""
        self._wake.set()

    async def wait_notified(self) -> None:
        await self._wake.wait()
        self._wake = anyio.Event()
