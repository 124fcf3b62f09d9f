"""The input CSV that matches a simulated fleet, streamed: `write_csv` and the rows under it.

`write_csv` writes `project_id,id` rows, unknown ids mixed in (instance numbers k >= instances_per_project,
which have the shape of any other id but are not members), in project order, round-robin across projects,
or shuffled by an affine permutation: O(1) memory for a generated fleet, deterministic per seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from bulkops.simulator.inventory import GeneratedInventory, Inventory, InventorySpec, Order, sha

__all__ = ["iter_csv_rows", "write_csv"]


def _unknown_count(known: int, share: float) -> int:
    return round(known * share / (1.0 - share)) if share > 0 else 0


def _affine(size: int, seed: int, salt: str) -> tuple[int, int]:
    """(a, b) with gcd(a, size) == 1, so i -> (a*i + b) % size is a permutation of range(size)."""
    if size <= 1:
        return 1, 0
    d = int(sha(f"bulkops-sim|shuffle|{seed}|{salt}")[:16], 16)
    a = d % size or 1
    while math.gcd(a, size) != 1:
        a = (a + 1) % size or 1
    return a, (d >> 20) % size


def iter_csv_rows(
    inventory: Inventory, *, unknown_share: float = 0.0, order: Order = "project", seed: int = 0
) -> Iterator[tuple[str, str]]:
    """(project_id, id) rows of an input file: every instance plus unknown ids making `unknown_share`
    of the rows. Streams; memory does not grow with the fleet for a generated inventory."""
    if not 0.0 <= unknown_share < 1.0:
        raise ValueError(f"unknown_share must be in [0, 1), got {unknown_share!r}")
    projects = inventory.project_ids
    sizes = [inventory.count(p) for p in projects]
    totals = [n + _unknown_count(n, unknown_share) for n in sizes]
    perms = [_affine(total, seed, p) for total, p in zip(totals, projects, strict=True)]
    nth = _id_lookup(inventory)

    def row(p: int, j: int) -> tuple[str, str]:
        project_id = projects[p]
        a, b = perms[p]
        k = (a * j + b) % totals[p]
        if k < sizes[p]:
            return project_id, nth(project_id, k)
        return project_id, inventory.unknown_id(project_id, k - sizes[p])

    if order == "project":
        for p, total in enumerate(totals):
            for j in range(total):
                yield row(p, j)
    elif order == "interleaved":
        for j in range(max(totals, default=0)):
            for p, total in enumerate(totals):
                if j < total:
                    yield row(p, j)
    elif order == "shuffled":
        offsets, acc = [], 0
        for total in totals:
            offsets.append(acc)
            acc += total
        a, b = _affine(acc, seed, "all")
        p = 0
        for g in range(acc):
            h = (a * g + b) % acc
            p = _find_project(offsets, h)
            yield row(p, h - offsets[p])
    else:
        raise ValueError(f"order must be project, interleaved or shuffled, got {order!r}")


def _find_project(offsets: list[int], h: int) -> int:
    lo, hi = 0, len(offsets) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if offsets[mid] <= h:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _id_lookup(inventory: Inventory) -> Callable[[str, int], str]:
    """k -> id of a project: recomputed for a generated fleet, from a list for a loaded (small) one."""
    if isinstance(inventory, GeneratedInventory):
        return inventory.instance_id
    lists = {p: [i for i, _s in inventory.iter_instances(p)] for p in inventory.project_ids}
    return lambda project_id, k: lists[project_id][k]


def write_csv(
    inventory: Inventory | InventorySpec,
    out: Path | str | TextIO,
    *,
    unknown_share: float | None = None,
    order: Order = "project",
    seed: int | None = None,
) -> int:
    """Write the input CSV (header `project_id,id`) matching a fleet to a path or text stream.

    `unknown_share` defaults to the spec's; `seed` (for the shuffle and unknown placement) to the spec's
    seed, else 0. Returns the number of data rows written.
    """
    if isinstance(inventory, InventorySpec):
        spec = inventory
        inventory = GeneratedInventory(spec)
    elif isinstance(inventory, GeneratedInventory):
        spec = inventory.spec
    else:
        spec = None
    share = unknown_share if unknown_share is not None else (spec.unknown_share if spec else 0.0)
    shuffle_seed = seed if seed is not None else (spec.seed if spec else 0)
    rows = iter_csv_rows(inventory, unknown_share=share, order=order, seed=shuffle_seed)
    if isinstance(out, str | Path):
        with Path(out).open("w", encoding="utf-8", newline="") as stream:
            return _write_rows(stream, rows)
    return _write_rows(out, rows)


def _write_rows(stream: TextIO, rows: Iterator[tuple[str, str]]) -> int:
    stream.write("project_id,id\n")
    count = 0
    batch: list[str] = []
    for project_id, instance_id in rows:
        batch.append(f"{project_id},{instance_id}\n")
        count += 1
        if len(batch) >= 4096:
            stream.write("".join(batch))
            batch.clear()
    stream.write("".join(batch))
    return count
