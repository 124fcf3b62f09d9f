"""The simulated fleet: which instances exist, in which project, in which initial status.

A generated inventory holds no object per instance, so a million instances cost a few hundred bytes:

* project i's id is 32 hex digits of sha256("bulkops-sim|project|<seed>|<i>");
* instance k of a project gets the id built from sha256("<seed>|<project_id>|<k>"): the first 19 hex digits
  of the digest fill the UUID (version nibble 4, variant nibble from [89ab]), and the last 12 hex digits are
  k XOR a per-project mask. Membership is checked by recovering k from the tail and rebuilding the id;
* the initial status is drawn from the same digest against the cumulative status mix.

Unknown ids for the input CSV are instance numbers k >= instances_per_project: they have the same shape and
look like any other id, but they are not members. A loaded inventory (JSON or CSV with project_id, id and
status) is a plain dict, for small hand-written fleets.

The input file that matches a fleet is written by `bulkops.simulator.inputcsv`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

#: The API's instance id pattern, from the reference.
ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
PROJECT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

#: Every status the reference lists.
STATUSES = frozenset(
    {
        "CREATE_FAILED", "CREATING", "DELETED", "DELETE_FAILED", "DELETING", "ERROR", "RUNNING",
        "STARTING", "START_FAILED", "STOPPED", "STOPPING", "STOP_FAILED", "REBOOTING", "REBOOT_FAILED",
        "CHANGINGOS", "CHANGINGOS_FAILED", "REINSTALLINGOS", "REINSTALLINGOS_FAILED",
    }
)  # fmt: skip

DEFAULT_MIX: Mapping[str, float] = {"RUNNING": 0.8, "STOPPED": 0.1, "STOPPING": 0.05, "ERROR": 0.05}
_MAX_K = 16**12
Order = Literal["project", "interleaved", "shuffled"]


@dataclass(frozen=True)
class InventorySpec:
    """A generated fleet: `projects` x `instances_per_project`, statuses drawn from `status_mix`.

    `unknown_share` is the share of rows in the input CSV (see `write_csv`) whose id is not in the fleet.
    The same `seed` gives the same project ids, instance ids and statuses.
    """

    projects: int = 3
    instances_per_project: int = 100
    status_mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    unknown_share: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.projects, int) and self.projects >= 0):
            raise ValueError(f"projects must be a whole number >= 0, got {self.projects!r}")
        n = self.instances_per_project
        if not (isinstance(n, int) and 0 <= n < _MAX_K // 2):
            raise ValueError(f"instances_per_project must be a whole number >= 0, got {n!r}")
        if not (isinstance(self.unknown_share, int | float) and 0.0 <= self.unknown_share < 1.0):
            raise ValueError(f"unknown_share must be in [0, 1), got {self.unknown_share!r}")
        if not self.status_mix:
            raise ValueError("status_mix is empty")
        for status, weight in self.status_mix.items():
            if status not in STATUSES:
                raise ValueError(f"unknown status {status!r} in status_mix")
            if not (isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0):
                raise ValueError(f"status_mix weight for {status} must be >= 0, got {weight!r}")
        if sum(self.status_mix.values()) <= 0:
            raise ValueError("status_mix weights add up to 0")

    @staticmethod
    def parse_mix(text: str) -> dict[str, float]:
        """`RUNNING=0.8,STOPPED=0.2` (or JSON) -> {"RUNNING": 0.8, "STOPPED": 0.2}."""
        text = text.strip()
        if text.startswith("{"):
            loaded = json.loads(text)
            return {str(k).upper(): float(v) for k, v in loaded.items()}
        mix: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, weight = part.partition("=")
            if not sep:
                raise ValueError(f"a status mix looks like RUNNING=0.8,STOPPED=0.2, got {text!r}")
            mix[name.strip().upper()] = float(weight)
        return mix


class Inventory(Protocol):
    """What the server needs to know about the fleet."""

    @property
    def project_ids(self) -> list[str]:
        """Every project, in a stable order."""
        ...

    def initial_status(self, project_id: str, instance_id: str) -> str | None:
        """The instance's status before any stop, or None when it does not exist."""
        ...

    def iter_instances(self, project_id: str) -> Iterator[tuple[str, str]]:
        """(id, initial status) of every instance of a project, in a stable order."""
        ...

    def count(self, project_id: str) -> int:
        """How many instances a project holds."""
        ...

    def unknown_id(self, project_id: str, j: int) -> str:
        """The j-th id that has the API's shape but is not in the project (for input files)."""
        ...


def sha(text: str) -> str:
    """The hex sha256 of `text`: every generated id and permutation is drawn from it."""
    return hashlib.sha256(text.encode()).hexdigest()


class GeneratedInventory:
    """A fleet computed from an `InventorySpec`: membership and status by recomputation, no storage."""

    __slots__ = ("_bases", "_index", "_masks", "_n", "_thresholds", "project_ids", "spec")

    def __init__(self, spec: InventorySpec) -> None:
        self.spec = spec
        self._n = spec.instances_per_project
        self.project_ids: list[str] = [
            sha(f"bulkops-sim|project|{spec.seed}|{i}")[:32] for i in range(spec.projects)
        ]
        self._index = {p: i for i, p in enumerate(self.project_ids)}
        self._bases = [hashlib.sha256(f"{spec.seed}|{p}|".encode()) for p in self.project_ids]
        self._masks = [int(sha(f"bulkops-sim|mask|{spec.seed}|{p}")[:12], 16) for p in self.project_ids]
        total = sum(spec.status_mix.values())
        acc, thresholds = 0.0, []
        for status, weight in spec.status_mix.items():
            if weight > 0:
                acc += weight / total
                thresholds.append((acc, status))
        self._thresholds = tuple(thresholds)

    def _digest(self, index: int, k: int) -> str:
        h = self._bases[index].copy()
        h.update(str(k).encode())
        return h.hexdigest()

    def _build(self, index: int, k: int, digest: str) -> str:
        variant = "89ab"[int(digest[15], 16) & 3]
        tail = k ^ self._masks[index]
        return f"{digest[:8]}-{digest[8:12]}-4{digest[12:15]}-{variant}{digest[16:19]}-{tail:012x}"

    def instance_id(self, project_id: str, k: int) -> str:
        """The id of instance number `k` of a project (k >= instances_per_project gives an unknown id)."""
        index = self._index[project_id]
        return self._build(index, k, self._digest(index, k))

    def _status(self, digest: str) -> str:
        u = int(digest[24:32], 16) / 2**32
        for threshold, status in self._thresholds:
            if u < threshold:
                return status
        return self._thresholds[-1][1]

    def initial_status(self, project_id: str, instance_id: str) -> str | None:
        """The status instance `instance_id` was generated with, or None when it is not a member."""
        index = self._index.get(project_id)
        if index is None or len(instance_id) != 36:
            return None
        try:
            k = int(instance_id[24:], 16) ^ self._masks[index]
        except ValueError:
            return None
        if k >= self._n:
            return None
        digest = self._digest(index, k)
        if self._build(index, k, digest) != instance_id:
            return None
        return self._status(digest)

    def iter_instances(self, project_id: str) -> Iterator[tuple[str, str]]:
        """(id, initial status) of instance 0, 1, ... of a project."""
        index = self._index[project_id]
        for k in range(self._n):
            digest = self._digest(index, k)
            yield self._build(index, k, digest), self._status(digest)

    def count(self, project_id: str) -> int:
        """instances_per_project for a known project, else 0."""
        return self._n if project_id in self._index else 0

    def unknown_id(self, project_id: str, j: int) -> str:
        """Instance number instances_per_project + j: shaped like the others, never a member."""
        return self.instance_id(project_id, self._n + j)


class LoadedInventory:
    """A fleet read from a file: a dict of (project_id, id) -> status, for small hand-made fleets."""

    __slots__ = ("_by_project", "_status")

    def __init__(self, rows: Mapping[tuple[str, str], str]) -> None:
        self._status = dict(rows)
        self._by_project: dict[str, list[str]] = {}
        for project_id, instance_id in self._status:
            self._by_project.setdefault(project_id, []).append(instance_id)

    @property
    def project_ids(self) -> list[str]:
        """Projects in the order they first appear in the file."""
        return list(self._by_project)

    def initial_status(self, project_id: str, instance_id: str) -> str | None:
        """The status the file gave, or None."""
        return self._status.get((project_id, instance_id))

    def iter_instances(self, project_id: str) -> Iterator[tuple[str, str]]:
        """(id, status) in file order."""
        for instance_id in self._by_project.get(project_id, ()):
            yield instance_id, self._status[(project_id, instance_id)]

    def count(self, project_id: str) -> int:
        """How many instances the file lists for a project."""
        return len(self._by_project.get(project_id, ()))

    def unknown_id(self, project_id: str, j: int) -> str:
        """A hash-made id that the file does not list."""
        while True:
            d = sha(f"bulkops-sim|unknown|{project_id}|{j}")
            candidate = f"{d[:8]}-{d[8:12]}-4{d[12:15]}-{'89ab'[int(d[15], 16) & 3]}{d[16:19]}-{d[20:32]}"
            if (project_id, candidate) not in self._status:
                return candidate
            j += 1_000_003


def _check_row(project_id: str, instance_id: str, status: str, where: str) -> tuple[tuple[str, str], str]:
    if not PROJECT_RE.match(project_id):
        raise ValueError(f"{where}: invalid project_id {project_id!r}")
    if not ID_RE.match(instance_id):
        raise ValueError(f"{where}: invalid instance id {instance_id!r}")
    status = status.strip().upper() or "RUNNING"
    if status not in STATUSES:
        raise ValueError(f"{where}: unknown status {status!r}")
    return (project_id, instance_id), status


def load_inventory(path: Path) -> LoadedInventory:
    """Read a fleet from JSON (a list of {project_id, id, status} objects, or {"instances": [...]})
    or from CSV with a header holding project_id, id and optionally status (default RUNNING)."""
    text = path.read_text(encoding="utf-8-sig")
    rows: dict[tuple[str, str], str] = {}
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        data = json.loads(text)
        items = data["instances"] if isinstance(data, dict) else data
        for n, item in enumerate(items, 1):
            key, status = _check_row(
                str(item["project_id"]), str(item["id"]), str(item.get("status", "")), f"{path} item {n}"
            )
            rows[key] = status
        return LoadedInventory(rows)
    reader = csv.DictReader(io.StringIO(text))
    names = {name.strip().lower(): name for name in reader.fieldnames or ()}
    if "project_id" not in names or "id" not in names:
        raise ValueError(f"{path}: the CSV header needs project_id and id columns")
    for n, record in enumerate(reader, 2):
        status = record.get(names["status"], "") if "status" in names else ""
        key, status = _check_row(
            record[names["project_id"]].strip(), record[names["id"]].strip(), status or "", f"{path} line {n}"
        )
        rows[key] = status
    return LoadedInventory(rows)


def make_inventory(spec: InventorySpec, path: Path | None = None) -> GeneratedInventory | LoadedInventory:
    """The fleet a config describes: loaded from `path` when given, else generated from `spec`."""
    return load_inventory(path) if path is not None else GeneratedInventory(spec)
