"""The instance state machine, computed lazily from timestamps: no timer, no task, no object per instance.

    RUNNING ──stop──► STOPPING ──(stop_delay elapsed)──► STOPPED
                                  └─(for stop_failed_share of ids)─► STOP_FAILED ──stop──► STOPPING ...
    STOPPED ──start──► STARTING ──(stop_delay elapsed)──► RUNNING       (START_FAILED ──start──► too)
    RUNNING ──reboot──► REBOOTING ──(stop_delay elapsed)──► RUNNING     (REBOOT_FAILED ──reboot──► too)

Only instances whose state changed are stored, in `InstanceStore.overrides` ((project_id, id) -> Override).
An override records when the operation was applied; the status is worked out on access by comparing the
clock with `since + stop_delay` (one delay for every transition). Instances generated as STOPPING,
STARTING or REBOOTING are taken to have started on their way when the store was made, so they too reach
their end after the delay without being stored.

Whether a stop ends in STOP_FAILED is decided per (id, attempt) by a hash, so a run repeats, and a second
stop of a STOP_FAILED instance may succeed (starts and reboots always succeed). Each operation is accepted
from the statuses in `MOVES` only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from bulkops.simulator.answers import created_ms
from bulkops.simulator.inventory import Inventory

#: operation -> (the statuses it is accepted from, the status on the way, the status at the end).
MOVES: dict[str, tuple[frozenset[str], str, str]] = {
    "stop": (frozenset({"RUNNING", "STOP_FAILED"}), "STOPPING", "STOPPED"),
    "start": (frozenset({"STOPPED", "START_FAILED"}), "STARTING", "RUNNING"),
    "reboot": (frozenset({"RUNNING", "REBOOT_FAILED"}), "REBOOTING", "RUNNING"),
}
STOPPABLE = MOVES["stop"][0]
#: A status generated on the way (the inventory's) -> the operation it is on the way of.
_ON_THE_WAY = {transit: op for op, (_, transit, _) in MOVES.items()}


def unit(text: str) -> float:
    """A float in [0, 1) that depends only on `text`: the simulator's per-id coin."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / 2**64


@dataclass(slots=True)
class Override:
    """A changed instance: `since` is the clock reading when the operation was applied; it is `transit`
    (STOPPING, ...) until the delay has passed, then `final`."""

    since: float
    update_ms: int
    final: str
    attempts: int
    transit: str = "STOPPING"


class InstanceStore:
    """The live status of every instance: the inventory's initial status plus the stored overrides."""

    __slots__ = ("_clock", "_delay", "_fail_share", "_started", "_wall", "inventory", "overrides")

    def __init__(
        self,
        inventory: Inventory,
        *,
        stop_delay: float,
        stop_failed_share: float,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self.inventory = inventory
        self.overrides: dict[tuple[str, str], Override] = {}
        self._delay = stop_delay
        self._fail_share = stop_failed_share
        self._clock = clock
        self._wall = wall_clock
        self._started = clock()

    def _final(self, instance_id: str, attempt: int, op: str = "stop") -> str:
        if op != "stop":
            return MOVES[op][2]
        if self._fail_share and unit(f"{instance_id}|stop|{attempt}") < self._fail_share:
            return "STOP_FAILED"
        return "STOPPED"

    def status(self, project_id: str, instance_id: str) -> tuple[str, int] | None:
        """(status, update_at ms) now, or None for an unknown instance."""
        override = self.overrides.get((project_id, instance_id))
        if override is not None:
            if self._clock() - override.since >= self._delay:
                return override.final, override.update_ms + int(self._delay * 1000)
            return override.transit, override.update_ms
        initial = self.inventory.initial_status(project_id, instance_id)
        if initial is None:
            return None
        update_ms = created_ms(instance_id) + 60_000
        on_the_way = _ON_THE_WAY.get(initial)
        if on_the_way is not None and self._clock() - self._started >= self._delay:
            return self._final(instance_id, 0, on_the_way), update_ms
        return initial, update_ms

    def stop(self, project_id: str, instance_id: str) -> tuple[str | None, bool, int]:
        """Apply a stop: `apply("stop", ...)`."""
        return self.apply("stop", project_id, instance_id)

    def apply(self, op: str, project_id: str, instance_id: str) -> tuple[str | None, bool, int]:
        """Apply operation `op` (a key of `MOVES`): (status, applied, update_at ms).

        `applied` is True when the instance went on its way now (STOPPING, STARTING, REBOOTING), which
        `status` then is; otherwise `status` is why not (None for an unknown instance, else the status
        that does not allow `op`).
        """
        current = self.status(project_id, instance_id)
        if current is None:
            return None, False, 0
        status, update_ms = current
        allowed, transit, _ = MOVES[op]
        if status not in allowed:
            return status, False, update_ms
        key = (project_id, instance_id)
        previous = self.overrides.get(key)
        attempt = previous.attempts + 1 if previous is not None else 1
        now_ms = int(self._wall() * 1000)
        final = self._final(instance_id, attempt, op)
        self.overrides[key] = Override(self._clock(), now_ms, final, attempt, transit)
        return transit, True, now_ms
