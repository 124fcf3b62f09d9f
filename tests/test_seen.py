"""SeenIndex: the compact duplicate index behind the reader's `skipped` (duplicate) rows."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from bulkops.io import seen as seen_module
from bulkops.io.seen import SeenIndex

PROJECT = "0123456789abcdef0123456789abcdef"


def ids(n: int, seed: int = 0) -> list[str]:
    return [str(uuid.UUID(int=(seed << 64) + i * 0x9E3779B97F4A7C15 + 1, version=4)) for i in range(n)]


def test_first_add_returns_none_then_the_first_line() -> None:
    """A key seen for the first time is stored; seeing it again returns the line it was first seen on."""
    index = SeenIndex()
    assert index.add_or_get(PROJECT, "a", 3) is None
    assert index.add_or_get(PROJECT, "a", 9) == 3
    assert index.add_or_get(PROJECT, "a", 12) == 3
    assert len(index) == 1


def test_same_id_in_another_project_is_a_different_key() -> None:
    """An instance id is only a duplicate within the same project."""
    index = SeenIndex()
    assert index.add_or_get("p1", "x", 1) is None
    assert index.add_or_get("p2", "x", 2) is None
    assert index.get("p1", "x") == 1
    assert index.get("p2", "x") == 2
    assert len(index) == 2


def test_contains_add_and_get() -> None:
    """`in`, `add` and `get` agree with `add_or_get`; `add` keeps the first line of a present key."""
    index = SeenIndex()
    index.add(PROJECT, "k", 5)
    index.add(PROJECT, "k", 6)
    index.add(PROJECT, "j")
    assert (PROJECT, "k") in index
    assert (PROJECT, "j") in index
    assert (PROJECT, "z") not in index
    assert index.get(PROJECT, "k") == 5
    assert index.get(PROJECT, "j") == 0
    assert index.get(PROJECT, "z") is None


def test_contains_rejects_other_shapes() -> None:
    """Membership of anything but a (str, str) tuple is False, not an error."""
    index = SeenIndex()
    index.add(PROJECT, "k")
    assert "k" not in index
    assert (PROJECT,) not in index
    assert (PROJECT, 1) not in index
    assert None not in index


def test_growing_keeps_every_key_and_line() -> None:
    """Keys and their first lines survive many in-place growths of an index started small."""
    index = SeenIndex()
    keys = ids(60_000)
    start = index.capacity
    for line, key in enumerate(keys, 1):
        assert index.add_or_get(PROJECT, key, line) is None
    assert index.capacity > start * 500
    assert len(index) == len(keys)
    for line, key in enumerate(keys, 1):
        assert index.add_or_get(PROJECT, key, 0) == line
    assert index.get(PROJECT, ids(1, seed=7)[0]) is None


def test_presized_index_costs_about_fourteen_bytes_a_key() -> None:
    """Sized from the row count, the index holds its keys in about 14 bytes each and never grows."""
    keys = ids(100_000)
    index = SeenIndex(expected=len(keys))
    capacity = index.capacity
    for line, key in enumerate(keys, 1):
        index.add(PROJECT, key, line)
    assert index.capacity == capacity
    assert index.nbytes / len(index) <= 14.2


def test_load_never_exceeds_its_ceiling() -> None:
    """The table grows before it is more than 85% full, which keeps lookups to a few probes."""
    index = SeenIndex()
    for line, key in enumerate(ids(5_000), 1):
        index.add(PROJECT, key, line)
        assert len(index) <= index.capacity * 17 // 20


def test_huge_line_numbers_are_clamped() -> None:
    """A line number beyond 2**31 - 1 is remembered as 2**31 - 1 instead of failing."""
    index = SeenIndex()
    index.add(PROJECT, "k", 2**40)
    assert index.get(PROJECT, "k") == 2**31 - 1


def test_fallback_fingerprint_is_64_bits_and_stable() -> None:
    """The BLAKE2b fingerprint used where hash() is narrow is a stable 64-bit value per key."""
    a = seen_module._fallback_fingerprint("p", "i")
    assert a == seen_module._fallback_fingerprint("p", "i")
    assert a != seen_module._fallback_fingerprint("p", "j")
    assert a != seen_module._fallback_fingerprint("p\x00i", "")
    assert 0 <= a < 2**64


def test_fallback_fingerprint_index_works(monkeypatch: object) -> None:
    """An index on a platform with a narrow hash() still finds every key (through BLAKE2b)."""
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(seen_module, "_WIDE_HASH", False)
    index = SeenIndex()
    for line, key in enumerate(ids(2_000), 1):
        assert index.add_or_get(PROJECT, key, line) is None
    for line, key in enumerate(ids(2_000), 1):
        assert index.get(PROJECT, key) == line
        assert (PROJECT, key) in index


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["p1", "p2", "p3"]), st.text(max_size=4)), max_size=400))
def test_behaves_like_a_dict_of_first_lines(ops: list[tuple[str, str]]) -> None:
    """For any sequence of adds, the index answers exactly as a dict of first-seen lines would."""
    index = SeenIndex()
    model: dict[tuple[str, str], int] = {}
    for line, key in enumerate(ops, 1):
        assert index.add_or_get(*key, line) == model.get(key)
        model.setdefault(key, line)
    assert len(index) == len(model)
    for key, line in model.items():
        assert index.get(*key) == line
