"""The simulated fleet: deterministic, memory-light ids and statuses, loaded fleets, the input CSV writer."""

from __future__ import annotations

import csv
import io
import json
import re
import tracemalloc
from pathlib import Path

import aiohttp
import pytest

from bulkops.simulator import (
    GeneratedInventory,
    InventorySpec,
    SimulatorConfig,
    iter_csv_rows,
    load_inventory,
    run_simulator,
    write_csv,
)

ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_generated_ids_are_valid_deterministic_and_self_verifying() -> None:
    """Same seed, same project ids, instance ids and statuses; each id has the API's shape and is a member."""
    spec = InventorySpec(projects=4, instances_per_project=300, seed=42)
    a, b = GeneratedInventory(spec), GeneratedInventory(spec)
    assert a.project_ids == b.project_ids and len(set(a.project_ids)) == 4
    assert all(re.fullmatch(r"[0-9a-f]{32}", p) for p in a.project_ids)
    for project_id in a.project_ids:
        rows = list(a.iter_instances(project_id))
        assert rows == list(b.iter_instances(project_id))
        assert len({i for i, _ in rows}) == 300
        for instance_id, status in rows:
            assert ID_RE.match(instance_id)
            assert a.initial_status(project_id, instance_id) == status
    other = GeneratedInventory(InventorySpec(projects=4, instances_per_project=300, seed=43))
    assert set(other.project_ids).isdisjoint(a.project_ids)


def test_non_members_are_rejected_by_recomputation() -> None:
    """Ids out of range, from another project, altered in one digit or malformed are not members."""
    inv = GeneratedInventory(InventorySpec(projects=2, instances_per_project=10, seed=1))
    p0, p1 = inv.project_ids
    member = inv.instance_id(p0, 3)
    assert inv.initial_status(p0, member) is not None
    assert inv.initial_status(p1, member) is None
    assert inv.initial_status(p0, inv.unknown_id(p0, 0)) is None
    assert ID_RE.match(inv.unknown_id(p0, 0))
    altered = member[:2] + ("0" if member[2] != "0" else "1") + member[3:]
    assert inv.initial_status(p0, altered) is None
    assert inv.initial_status(p0, member.upper()) is None
    assert inv.initial_status(p0, "not-an-id") is None
    assert inv.initial_status("x" * 32, member) is None


def test_status_mix_is_respected() -> None:
    """Initial statuses follow the configured mix (10,000 instances, within 5 standard deviations)."""
    mix = {"RUNNING": 0.7, "STOPPED": 0.2, "CREATING": 0.1}
    inv = GeneratedInventory(InventorySpec(projects=1, instances_per_project=10_000, status_mix=mix, seed=9))
    counts: dict[str, int] = {}
    for _, status in inv.iter_instances(inv.project_ids[0]):
        counts[status] = counts.get(status, 0) + 1
    for status, share in mix.items():
        assert abs(counts[status] - 10_000 * share) < 5 * (10_000 * share * (1 - share)) ** 0.5


def test_a_million_instances_cost_no_memory_up_front() -> None:
    """A 1,000,000-instance fleet is built without per-instance objects (well under 1 MB of allocations)."""
    tracemalloc.start()
    try:
        inv = GeneratedInventory(InventorySpec(projects=100, instances_per_project=10_000, seed=3))
        size, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size < 1_000_000
    last = inv.instance_id(inv.project_ids[-1], 9_999)
    assert inv.initial_status(inv.project_ids[-1], last) is not None


@pytest.mark.anyio
async def test_overrides_hold_only_changed_instances() -> None:
    """Before any stop the override dict is empty; after one stop it holds exactly that instance."""
    config = SimulatorConfig(
        auth_enabled=False, inventory=InventorySpec(projects=10, instances_per_project=100_000, seed=2)
    )
    async with run_simulator(config) as sim, aiohttp.ClientSession() as session:
        assert sim.instances.overrides == {}
        project_id = sim.inventory.project_ids[5]
        instance_id = next(i for i, s in sim.inventory.iter_instances(project_id) if s == "RUNNING")
        async with session.put(f"{sim.url}/v1/{project_id}/dev-servers/{instance_id}/stop") as resp:
            assert resp.status == 200
    assert list(sim.instances.overrides) == [(project_id, instance_id)]


@pytest.mark.parametrize("order", ["project", "interleaved", "shuffled"])
def test_csv_writer_output_parses_and_includes_unknown_ids(order: str) -> None:
    """The CSV has header project_id,id, every instance once, and the configured share of unknown ids."""
    spec = InventorySpec(projects=3, instances_per_project=200, unknown_share=0.2, seed=4)
    inv = GeneratedInventory(spec)
    out = io.StringIO()
    rows = write_csv(spec, out, order=order)  # type: ignore[arg-type]
    reader = csv.DictReader(io.StringIO(out.getvalue()))
    assert reader.fieldnames == ["project_id", "id"]
    records = [(r["project_id"], r["id"]) for r in reader]
    assert len(records) == rows == 3 * 250
    assert len(set(records)) == rows
    unknown = [r for r in records if inv.initial_status(*r) is None]
    assert len(unknown) == 150
    known = {r for r in records if inv.initial_status(*r) is not None}
    assert known == {(p, i) for p in inv.project_ids for i, _ in inv.iter_instances(p)}
    assert all(ID_RE.match(i) for _, i in records)
    if order == "project":
        firsts = [p for p, _ in records]
        assert firsts == sorted(firsts, key=inv.project_ids.index)
        assert any(inv.initial_status(*r) is None for r in records[:100])  # unknowns are spread out
    if order == "interleaved":
        assert [p for p, _ in records[:3]] == inv.project_ids


def test_csv_writer_is_deterministic_and_writes_to_a_path(tmp_path: Path) -> None:
    """The same spec writes the same file; shuffled order differs from project order."""
    spec = InventorySpec(projects=2, instances_per_project=50, unknown_share=0.1, seed=8)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_csv(spec, a, order="shuffled")
    write_csv(spec, str(b), order="shuffled")
    assert a.read_text() == b.read_text()
    grouped = list(iter_csv_rows(GeneratedInventory(spec), unknown_share=0.1, order="project", seed=8))
    shuffled = a.read_text().splitlines()[1:]
    assert shuffled != [f"{p},{i}" for p, i in grouped]
    assert sorted(shuffled) == sorted(f"{p},{i}" for p, i in grouped)


@pytest.mark.anyio
async def test_loaded_inventory_from_json_and_csv(tmp_path: Path) -> None:
    """A fleet loaded from JSON or CSV answers with the file's statuses; ids not in it are 6309."""
    p = "0123456789abcdef0123456789abcdef"
    a, b, c = (f"{n}2345678-1234-4234-8234-123456789abc" for n in "abc")
    json_file = tmp_path / "fleet.json"
    json_file.write_text(json.dumps([{"project_id": p, "id": a, "status": "RUNNING"},
                                     {"project_id": p, "id": b, "status": "STOPPED"}]))  # fmt: skip
    csv_file = tmp_path / "fleet.csv"
    csv_file.write_text(f"project_id,id,status\n{p},{a},RUNNING\n{p},{b},stopped\n")
    assert dict(load_inventory(csv_file).iter_instances(p)) == dict(
        load_inventory(json_file).iter_instances(p)
    )
    config = SimulatorConfig(auth_enabled=False, inventory_file=json_file, not_found_404_share=1.0)
    async with run_simulator(config) as sim, aiohttp.ClientSession() as session:
        answers = []
        for instance_id in (a, b, c):
            async with session.put(f"{sim.url}/v1/{p}/dev-servers/{instance_id}/stop") as resp:
                answers.append((resp.status, (await resp.json()).get("error_code")))
    assert answers == [(200, None), (400, "ModelArts.6307"), (404, "ModelArts.6309")]
    out = io.StringIO()
    assert write_csv(sim.inventory, out, unknown_share=0.5) == 4
    bad = tmp_path / "bad.csv"
    bad.write_text(f"project_id,id\n{p},not-an-id\n")
    with pytest.raises(ValueError, match="invalid instance id"):
        load_inventory(bad)


def test_spec_rejects_nonsense() -> None:
    """Unknown statuses, an empty mix and an unknown share of 1 are refused."""
    with pytest.raises(ValueError, match="unknown status"):
        InventorySpec(status_mix={"SLEEPING": 1.0})
    with pytest.raises(ValueError, match="unknown_share"):
        InventorySpec(unknown_share=1.0)
    assert InventorySpec.parse_mix("running=0.5, STOPPED=0.5") == {"RUNNING": 0.5, "STOPPED": 0.5}
