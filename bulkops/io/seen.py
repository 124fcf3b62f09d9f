"""A compact set of (project_id, id) keys, each with the line it was first seen on.

The reader asks one question per input row: "was this (project_id, id) seen before, and on which line?".
At a million rows a Python ``set`` of tuples costs about 250 bytes a key; this index costs 12 bytes a slot
(about 14 bytes a key at the 0.85 load it is sized for), so a million distinct keys fit in about 14 MB.

Layout
    An open-addressing hash table over two parallel arrays: ``array('Q')`` of 64-bit fingerprints (0 marks an
    empty slot) and ``array('I')`` of line numbers (31 bits of line, the top bit used while growing). The
    capacity is a prime, so double hashing (start ``f % cap``, step ``1 + f % (cap - 1)``) visits every slot
    and needs about 7 probes for a miss at the 0.85 load ceiling (linear probing would need 22): the
    memory target (peak RSS at a million rows within 1.3x of that at 100,000) is worth the extra probes.

Fingerprints, and why 64 bits are enough
    A key is stored as ``hash((project_id, id))``, 64 bits of CPython's SipHash-1-3, keyed with a random
    per-process secret (``PYTHONHASHSEED``); on a platform whose ``hash()`` is narrower, a keyed 8-byte
    BLAKE2b digest is used instead. Two different keys share a fingerprint with probability 2**-64, so among
    n distinct keys some pair collides with probability at most n*(n-1)/2**65: about 3e-10 at 100,000 keys
    and 3e-8 at 1,000,000 (one run in some thirty million). A collision can only make the reader report a
    row as a duplicate of a line holding another instance (it never sends anything twice), the report names
    that line, and the per-process key means a rerun does not repeat it. Storing the ids exactly would take
    at least 16 bytes of UUID plus the project, more than twice the memory, for a risk no run will meet.
    The ids' own UUID bits are deliberately not used as the hash: folding structured ids (v1 time-based ids,
    sequential test ids) into 64 bits can collide systematically, a keyed hash cannot.

Growth without a memory spike
    The table is sized from ``expected`` up front (the reader passes its row count, an upper bound on the
    keys), so a file read from disk never grows it. Without a hint (standard input) it starts small and
    grows at 0.85 load, x2 below a million slots and x1.5 above (so a million keys cost about 17 bytes each),
    in place: both arrays are extended in 64 KiB steps (``realloc``, done with ``mremap`` for large blocks)
    and the entries are re-placed where they stand, the top bit of the line word telling moved entries from
    those still to move. Peak memory is the new table alone, never old plus new. Growing costs about 0.8 us
    an entry, paid in one pause (about 0.6 s at 800,000 keys) by the row that triggers it.
"""

from __future__ import annotations

import hashlib
import os
import sys
from array import array

__all__ = ["SeenIndex"]

_U64 = (1 << 64) - 1
_LINE_MASK = 0x7FFF_FFFF
_MOVED = 0x8000_0000
_MIN_CAPACITY = 61
_DOUBLE_BELOW = 1 << 20  # grow x2 below a million slots (cheap rehash), x1.5 above (less slack)
_ZEROS = bytes(1 << 16)
_WIDE_HASH = sys.hash_info.width >= 64
_FALLBACK_KEY = os.urandom(16)


def _fallback_fingerprint(project_id: str, id: str) -> int:
    """A keyed 64-bit fingerprint for platforms whose `hash()` has fewer than 64 bits."""
    data = f"{project_id}\x00{id}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=_FALLBACK_KEY).digest(), "little")


def _is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin for every n below 3.3e24 (far beyond any table size)."""
    if n < 2:
        return False
    small = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
    for p in small:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for a in small:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime_at_least(n: int) -> int:
    n = max(n, _MIN_CAPACITY) | 1
    while not _is_prime(n):
        n += 2
    return n


_LOAD_NUM, _LOAD_DEN = 17, 20  # the 0.85 load ceiling


def _capacity_for(keys: int) -> int:
    """The smallest prime capacity that holds `keys` at no more than 0.85 load."""
    return _prime_at_least(keys * _LOAD_DEN // _LOAD_NUM + 1)


def _zeroed(typecode: str, n: int) -> array[int]:
    table = array(typecode)
    _extend_zeroed(table, n)
    return table


def _extend_zeroed(table: array[int], n: int) -> None:
    """Append `n` zero items in 64 KiB steps, so no temporary as large as the table is ever made."""
    nbytes = n * table.itemsize
    while nbytes >= len(_ZEROS):
        table.frombytes(_ZEROS)
        nbytes -= len(_ZEROS)
    if nbytes:
        table.frombytes(_ZEROS[:nbytes])


class SeenIndex:
    """A set of (project_id, id) keys that remembers the first line of each, in about 14 bytes a key.

    Membership is by 64-bit keyed fingerprint: a false "already seen" has probability below
    n**2 / 2**65 for n keys (3e-8 at a million); see the module docstring. Lines above 2**31 - 1 are
    stored as 2**31 - 1.
    """

    __slots__ = ("_capacity", "_fps", "_limit", "_lines", "_mark", "_room")

    def __init__(self, expected: int = 0) -> None:
        """Make an empty index sized for `expected` keys (it grows past them if needed)."""
        capacity = _capacity_for(max(expected, 0))
        self._capacity = capacity
        self._limit = capacity * _LOAD_NUM // _LOAD_DEN
        self._room = self._limit
        self._mark = 0
        self._fps = _zeroed("Q", capacity)
        self._lines = _zeroed("I", capacity)
        if self._fps.itemsize != 8 or self._lines.itemsize != 4:  # pragma: no cover - exotic platforms
            raise RuntimeError("SeenIndex needs 8-byte 'Q' and 4-byte 'I' arrays")

    def __len__(self) -> int:
        """The number of distinct keys stored."""
        return self._limit - self._room

    @property
    def capacity(self) -> int:
        """The number of slots in the table."""
        return self._capacity

    @property
    def nbytes(self) -> int:
        """Bytes held by the two arrays (the whole of the index's size that grows with keys)."""
        return self._capacity * 12

    def add_or_get(self, project_id: str, id: str, line: int) -> int | None:
        """Return the line of an earlier (project_id, id); else remember it with `line` and return None."""
        f = (hash((project_id, id)) & _U64 if _WIDE_HASH else _fallback_fingerprint(project_id, id)) or 1
        fps = self._fps
        cap = self._capacity
        i = f % cap
        g = fps[i]
        if g:
            if g == f:
                return self._lines[i] & _LINE_MASK
            step = f % (cap - 1) + 1
            while True:
                i += step
                if i >= cap:
                    i -= cap
                g = fps[i]
                if not g:
                    break
                if g == f:
                    return self._lines[i] & _LINE_MASK
        if not self._room:
            self._grow()
            i = self._free_slot(f)
        fps[i] = f
        self._lines[i] = (line if line < _LINE_MASK else _LINE_MASK) | self._mark
        self._room -= 1
        return None

    def add(self, project_id: str, id: str, line: int = 0) -> None:
        """Remember (project_id, id); a key already present keeps its first line."""
        self.add_or_get(project_id, id, line)

    def get(self, project_id: str, id: str) -> int | None:
        """The line stored for (project_id, id), or None when it was never added."""
        f = (hash((project_id, id)) & _U64 if _WIDE_HASH else _fallback_fingerprint(project_id, id)) or 1
        fps = self._fps
        cap = self._capacity
        i = f % cap
        step = f % (cap - 1) + 1
        while True:
            g = fps[i]
            if not g:
                return None
            if g == f:
                return self._lines[i] & _LINE_MASK
            i += step
            if i >= cap:
                i -= cap

    def __contains__(self, key: object) -> bool:
        """True when the (project_id, id) tuple `key` was added."""
        if not (isinstance(key, tuple) and len(key) == 2):
            return False
        project_id, id = key
        if not (isinstance(project_id, str) and isinstance(id, str)):
            return False
        return self.get(project_id, id) is not None

    def _free_slot(self, f: int) -> int:
        """The slot where fingerprint `f`, known to be absent, belongs."""
        fps = self._fps
        cap = self._capacity
        i = f % cap
        step = f % (cap - 1) + 1
        while fps[i]:
            i += step
            if i >= cap:
                i -= cap
        return i

    def _grow(self) -> None:
        """Grow the table in place: x2 while small, x1.5 from a million slots.

        Every entry present now carries the old mark in its line word. Walking the old slots, each entry
        still carrying it is moved to the first slot of its new probe sequence that is empty or holds
        another unmoved entry (then the two swap, and the swapped-in one is placed next). Moved entries are
        never moved again, so every slot before an entry on its probe sequence stays full: lookups work.
        """
        old = self._capacity
        new = _prime_at_least(2 * old + 1 if old < _DOUBLE_BELOW else old * 3 // 2)
        fps, lines = self._fps, self._lines
        _extend_zeroed(fps, new - old)
        _extend_zeroed(lines, new - old)
        mark = self._mark ^ _MOVED
        self._mark = mark
        m1 = new - 1
        for i in range(old):
            f = fps[i]
            if not f:
                continue
            w = lines[i]
            while (w & _MOVED) != mark:
                j = f % new
                g = fps[j]
                v = lines[j]
                if g and j != i and (v & _MOVED) == mark:
                    step = f % m1 + 1
                    while True:
                        j += step
                        if j >= new:
                            j -= new
                        g = fps[j]
                        if not g or j == i:
                            break
                        v = lines[j]
                        if (v & _MOVED) != mark:
                            break
                if j == i:
                    lines[i] = w ^ _MOVED
                    break
                fps[j] = f
                lines[j] = w ^ _MOVED
                if not g:
                    fps[i] = 0
                    lines[i] = 0
                    break
                fps[i] = g
                lines[i] = v
                f, w = g, v
        count = self._limit - self._room
        self._capacity = new
        self._limit = new * _LOAD_NUM // _LOAD_DEN
        self._room = self._limit - count
