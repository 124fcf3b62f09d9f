"""The reader: INPUT (CSV file or stdin) to validated, de-duplicated rows, as the contract's "Input" says."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkops.errors import ConfigError, InputError
from bulkops.io import csvrows
from bulkops.io.csvrows import MAX_LINE_BYTES, MAX_RECORD_LINES
from bulkops.io.rowcount import count_rows
from bulkops.io.seen import SeenIndex
from bulkops.io.targets import (
    INSTANCE_ID_RE,
    SHOWN_CHARS,
    TargetReader,
    is_valid_instance_id,
    is_valid_project_id,
    read_targets,
)
from bulkops.models import (
    DUPLICATE,
    INVALID_ID,
    INVALID_PROJECT_ID,
    INVALID_ROW,
    MISSING_PROJECT_ID,
    Outcome,
    Result,
    Target,
)

P = "0123456789abcdef0123456789abcdef"
Q = "fedcba9876543210fedcba9876543210"
U1 = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
U2 = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
U3 = "c56a4180-65aa-42ec-a945-5fd21dec0538"
U4 = "123e4567-e89b-52d3-b456-426614174000"


def read(data: bytes | str, default_project: str | None = P, **kw: object) -> list[Target | Result]:
    raw = data.encode() if isinstance(data, str) else data
    return list(read_targets(io.BytesIO(raw), default_project=default_project, **kw))  # type: ignore[arg-type]


def only(records: list[Target | Result]) -> Target | Result:
    assert len(records) == 1, records
    return records[0]


def invalid(record: Target | Result, code: str) -> Result:
    assert isinstance(record, Result), record
    assert record.outcome is Outcome.INVALID
    assert record.error_code == code, record
    assert record.attempts == 0
    assert record.http_status is None
    assert record.finished_at == ""
    return record


# --- whole-input problems: InputError / ConfigError, one line, before any row -------------------------


def test_empty_file_yields_nothing() -> None:
    """An empty INPUT has no rows: nothing to send, no error."""
    assert read(b"") == []


def test_only_blank_lines_yield_nothing() -> None:
    """Blank lines (spaces, tabs, CRLF) are skipped without records."""
    assert read(b"\n  \n\t\r\n\n") == []


def test_header_only_yields_nothing() -> None:
    """A header and no data rows is an empty run, not an error."""
    assert read("project_id,id\r\n\r\n") == []


@pytest.mark.parametrize("header", ["name,zone", "ids", "instance,project_id", "abc", "id_,instanceid"])
def test_header_without_id_column_is_an_input_error(header: str) -> None:
    """A header without an `id` or `instance_id` column is refused up front, in one line naming them."""
    with pytest.raises(InputError) as info:
        read_targets(io.BytesIO(f"{header}\n{U1}\n".encode()), default_project=P)
    message = str(info.value)
    assert message.startswith("header has no 'id' or 'instance_id' column: ")
    assert repr(header.split(",", maxsplit=1)[0]) in message
    assert "\n" not in message


def test_missing_id_column_error_is_raised_before_iteration(tmp_path: Path) -> None:
    """The header check happens when the reader is made, so nothing can be sent before it fails."""
    path = tmp_path / "in.csv"
    path.write_text("project_id,name\np,x\n")
    with pytest.raises(InputError, match="header has no 'id'"):
        read_targets(path, default_project=None)


def test_binary_garbage_is_an_input_error() -> None:
    """Binary data (NUL bytes in the first line) is refused as 'looks binary'."""
    garbage = bytes(range(256)) * 4
    with pytest.raises(InputError, match="looks binary") as info:
        read(garbage)
    assert "\n" not in str(info.value)


def test_binary_garbage_without_nul_is_an_input_error() -> None:
    """Random non-text bytes without NULs read as a header with no id column: still refused, nothing sent."""
    garbage = bytes((i * 97 + 13) % 255 + 1 for i in range(3000))
    with pytest.raises(InputError, match="header has no 'id'"):
        read(garbage)


def test_nul_bytes_in_first_line_after_blank_lines_are_binary() -> None:
    """The binary check applies to the first non-blank line, wherever it is."""
    with pytest.raises(InputError, match="looks binary"):
        read(b"\n\n\x00\x01\x02id\n")


def test_utf16_input_is_refused_with_advice() -> None:
    """A UTF-16 export (Excel's 'Unicode text') is refused with a hint to save it as UTF-8."""
    with pytest.raises(InputError, match="UTF-16"):
        read(f"id\n{U1}\n".encode("utf-16"))


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    """A path that does not exist is one clear InputError."""
    with pytest.raises(InputError, match="does not exist"):
        read_targets(tmp_path / "nope.csv", default_project=P)


def test_directory_is_an_input_error(tmp_path: Path) -> None:
    """A directory given as INPUT is one clear InputError."""
    with pytest.raises(InputError, match="is a directory") as info:
        read_targets(tmp_path, default_project=P)
    assert "\n" not in str(info.value)


def test_unreadable_file_is_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file the process may not read is one clear InputError (opening is simulated: tests run as root)."""
    path = tmp_path / "secret.csv"
    path.write_text(f"{U1}\n")

    def denied(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(csvrows, "open", denied, raising=False)
    with pytest.raises(InputError, match="not readable: permission denied"):
        read_targets(path, default_project=P)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads chmod 000 files")
def test_unreadable_file_for_real(tmp_path: Path) -> None:
    """A chmod 000 file is one clear InputError (only meaningful when not running as root)."""
    path = tmp_path / "secret.csv"
    path.write_text(f"{U1}\n")
    path.chmod(0)
    with pytest.raises(InputError, match="not readable"):
        read_targets(path, default_project=P)


def test_other_open_errors_are_input_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any other OS error on open (EIO, ELOOP, ...) is an InputError with the system's reason."""

    def broken(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(csvrows, "open", broken, raising=False)
    with pytest.raises(InputError, match="cannot be opened: Input/output error"):
        read_targets(tmp_path / "x.csv", default_project=P)


def test_read_error_midway_is_an_input_error() -> None:
    """An I/O error while reading is an InputError, not a traceback."""

    class Failing(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            raise OSError(5, "Input/output error")

    with pytest.raises(InputError, match="Input/output error"):
        list(read_targets(Failing(), default_project=P))


def test_invalid_default_project_is_a_config_error() -> None:
    """A --project-id that is not a valid project ID is refused before reading anything."""
    with pytest.raises(ConfigError, match="--project-id"):
        read_targets(io.BytesIO(f"{U1}\n".encode()), default_project="../etc")


# --- lines, encodings, CSV ----------------------------------------------------------------------------


def test_headerless_first_line_with_a_bad_id_reads_as_a_header() -> None:
    """Per the contract, a first line holding no valid id is a header, so a bad first id fails the input."""
    with pytest.raises(InputError, match="none of its fields is a valid instance ID"):
        read(f"{U1.upper()}\n{U2}\n")


def test_headerless_one_id_per_line() -> None:
    """Without a header each line is one instance ID, sent under the default project."""
    assert read(f"{U1}\n{U2}\n") == [Target(1, P, U1), Target(2, P, U2)]


def test_headerless_last_line_without_newline() -> None:
    """The last line counts even without a final newline."""
    assert read(f"{U1}\n{U2}") == [Target(1, P, U1), Target(2, P, U2)]


def test_headerless_line_with_several_fields_is_invalid() -> None:
    """Without a header a line holding a comma is invalid (one ID per line), never guessed at."""
    records = read(f"{U1}\n{U2},{P}\n{U3},\n")
    assert records[0] == Target(1, P, U1)
    for record in records[1:]:
        assert "expected one instance ID per line" in (invalid(record, INVALID_ROW).error_msg or "")
    assert records[1].id == f"{U2},{P}"


def test_bom_and_crlf_are_accepted() -> None:
    """A UTF-8 byte-order mark and CRLF line ends (Excel's CSV) read like plain text."""
    data = b"\xef\xbb\xbfID,Project_ID\r\n" + f"{U1},{Q}\r\n{U2},\r\n".encode()
    assert read(data) == [Target(2, Q, U1), Target(3, P, U2)]


def test_bom_on_headerless_input() -> None:
    """A byte-order mark before a headerless first id does not make that id invalid."""
    assert read(b"\xef\xbb\xbf" + U1.encode() + b"\r\n") == [Target(1, P, U1)]


def test_header_names_are_trimmed_and_case_insensitive() -> None:
    """Header names match case-insensitively after trimming spaces and tabs."""
    assert read(f" Name ,\t ID\t, PROJECT_ID \nx,{U1},{Q}\n") == [Target(2, Q, U1)]


def test_instance_id_column() -> None:
    """`instance_id` is accepted as the id column."""
    assert read(f"instance_id\n{U1}\n") == [Target(2, P, U1)]


def test_id_column_preferred_over_instance_id() -> None:
    """With both `id` and `instance_id`, `id` is the one used."""
    assert read(f"instance_id,id\n{U2},{U1}\n") == [Target(2, P, U1)]


def test_other_columns_are_ignored() -> None:
    """Columns besides id and project_id are ignored, whatever they hold."""
    assert read(f"zone,id,flavor,extra\n../x,{U1},%2F?#,\n") == [Target(2, P, U1)]


def test_project_id_column_mixed_with_default() -> None:
    """Each row's project_id is used when present; an empty or missing cell falls back to --project-id."""
    data = f"id,project_id\n{U1},{Q}\n{U2},\n{U3}\n{U4},  \t \n"
    assert read(data) == [Target(2, Q, U1), Target(3, P, U2), Target(4, P, U3), Target(5, P, U4)]


def test_missing_project_id_is_invalid() -> None:
    """A row with no project ID and no --project-id is invalid, never sent."""
    records = read(f"id,project_id\n{U1},\n{U2},{Q}\n", default_project=None)
    assert invalid(records[0], MISSING_PROJECT_ID).id == U1
    assert records[1] == Target(3, Q, U2)
    assert invalid(only(read(f"{U1}\n", default_project=None)), MISSING_PROJECT_ID).line == 1


def test_fields_are_trimmed_of_spaces_and_tabs_only() -> None:
    """Spaces and tabs around fields are trimmed; other whitespace is kept (and makes the id invalid)."""
    assert read(f"id,project_id\n \t{U1}\t , {Q} \n") == [Target(2, Q, U1)]
    invalid(only(read(f"id\n\u00a0{U1}\n")), INVALID_ID)
    invalid(only(read(f"id\n{U1}\x0b\n")), INVALID_ID)


def test_blank_lines_are_skipped_and_line_numbers_stay_physical() -> None:
    """Blank lines produce no record, and every record keeps its physical line number."""
    data = f"\n\nid\n\n{U1}\n   \n\t\n{U2}\n\n"
    assert read(data) == [Target(5, P, U1), Target(8, P, U2)]


def test_quoted_fields_with_commas_and_newlines() -> None:
    """Quoted fields may hold commas and newlines; line numbers count physical lines across them."""
    data = (
        "id,note,project_id\n"
        f'{U1},"a, b",{Q}\n'
        f'"{U2}","line one\nline two, with comma\n\nline four",{Q}\n'
        f"{U3},plain,\n"
        f'"{U4}","say ""hi""",""\n'
    )
    assert read(data) == [Target(2, Q, U1), Target(3, Q, U2), Target(7, P, U3), Target(8, P, U4)]


def test_quoted_newline_inside_an_id_is_invalid() -> None:
    """An id holding a quoted newline is invalid, and the rows after it keep their line numbers."""
    records = read(f'id\n"{U1}\n"\n{U2}\n')
    assert invalid(records[0], INVALID_ID).line == 2
    assert records[1] == Target(4, P, U2)


def test_quoted_crlf_file() -> None:
    """Quoted multi-line fields work with CRLF line ends too."""
    data = f'id,note\r\n{U1},"a\r\nb"\r\n{U2},x\r\n'.encode()
    assert read(data) == [Target(2, P, U1), Target(4, P, U2)]


def test_stray_quote_costs_one_row_not_the_rest_of_the_file() -> None:
    """A quote left open makes its own line invalid; the lines after it are still read as rows."""
    body = "".join(f"{i:08x}-0000-4000-8000-000000000000\n" for i in range(MAX_RECORD_LINES * 2))
    records = read(f'id\n"oops\n{body}')
    first = invalid(records[0], INVALID_ROW)
    assert first.line == 2
    assert "quoted field not closed" in (first.error_msg or "")
    assert [r.line for r in records[1:]] == list(range(3, 3 + MAX_RECORD_LINES * 2))
    assert all(isinstance(r, Target) for r in records[1:])


def test_unterminated_quote_at_end_of_input() -> None:
    """A quote still open at the end of INPUT is one invalid row; the lines it swallowed are re-read."""
    records = read(f'{U1}\n"{U2}\n{U3}\n')
    assert records[0] == Target(1, P, U1)
    assert "end of INPUT" in (invalid(records[1], INVALID_ROW).error_msg or "")
    assert records[2] == Target(3, P, U3)


def test_malformed_quoting_is_one_invalid_row() -> None:
    """CSV the csv module rejects (a bare CR in a quoted record) is one invalid row, then reading goes on."""
    records = read(f'id,note\n{U1},"x"\ry\n{U2},z\n')
    assert "malformed CSV" in (invalid(records[0], INVALID_ROW).error_msg or "")
    assert records[1] == Target(3, P, U2)


def test_invalid_utf8_row_is_invalid_not_fatal() -> None:
    """A line that is not valid UTF-8 is one invalid row; its text is kept readable and JSON-safe."""
    records = read(b"id\n" + U1.encode() + b"\n\xff\xfe" + U2.encode()[2:] + b"\n" + U3.encode() + b"\n")
    assert records[0] == Target(2, P, U1)
    bad = invalid(records[1], INVALID_ROW)
    assert bad.error_msg == "line is not valid UTF-8"
    assert bad.line == 3
    assert bad.id is not None and "\ufffd" in bad.id
    json.dumps(bad.id, ensure_ascii=False).encode("utf-8")
    assert records[2] == Target(4, P, U3)


def test_invalid_utf8_inside_a_quoted_record() -> None:
    """Bad UTF-8 on a continuation line of a quoted record makes that record invalid."""
    records = read(b"id,note\n" + U1.encode() + b',"a\n\xc3(b"\n' + U2.encode() + b",x\n")
    assert invalid(records[0], INVALID_ROW).line == 2
    assert records[1] == Target(4, P, U2)


def test_nul_bytes_in_a_later_row_make_it_invalid() -> None:
    """NUL bytes after the first line make that row invalid; the run goes on."""
    records = read(f"{U1}\n{U2[:10]}\x00{U2[11:]}\n{U3}\n")
    assert [type(r) for r in records] == [Target, Result, Target]
    invalid(records[1], INVALID_ID)


def test_ten_megabyte_line_is_one_invalid_row_in_bounded_memory(tmp_path: Path) -> None:
    """A 10 MB line is one invalid row and is skipped without being held in memory."""
    path = tmp_path / "big-line.csv"
    with path.open("wb") as f:
        f.write(f"{U1}\n".encode())
        f.write(b"a" * 10_000_000 + b"\n")
        f.write(f"{U2}\n".encode())
    tracemalloc.start()
    try:
        records = list(read_targets(path, default_project=P))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert records[0] == Target(1, P, U1)
    bad = invalid(records[1], INVALID_ROW)
    assert bad.line == 2
    assert bad.error_msg == f"line is longer than {MAX_LINE_BYTES} bytes"
    assert bad.id is None
    assert records[2] == Target(3, P, U2)
    assert peak < 2_000_000


def test_overlong_first_line_is_a_data_row() -> None:
    """An over-long first line cannot be a header: it is an invalid row and the ids after it are read."""
    records = read(b"x" * (MAX_LINE_BYTES + 10) + b"\n" + U1.encode() + b"\n")
    assert invalid(records[0], INVALID_ROW).line == 1
    assert records[1] == Target(2, P, U1)


def test_line_of_exactly_the_limit_is_read() -> None:
    """A line of exactly MAX_LINE_BYTES bytes is still read (and judged) as a row."""
    line = (U1 + " " * (MAX_LINE_BYTES - len(U1))).encode()
    assert read(line + b"\n" + line) == [
        Target(1, P, U1),
        Result(2, P, U1, Outcome.SKIPPED, error_code=DUPLICATE, error_msg="duplicate of line 1"),
    ]


# --- ids and project ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id",
    [
        U1.upper(),
        U1[:8] + " " + U1[9:],
        "3f2504e0 -4f89-41d3-9a0c-0305e82c3301",
        "3f2504e0-4f89-01d3-9a0c-0305e82c3301",  # version 0
        "3f2504e0-4f89-61d3-9a0c-0305e82c3301",  # version 6
        "3f2504e0-4f89-41d3-ca0c-0305e82c3301",  # variant c
        "3f2504e0-4f89-41d3-7a0c-0305e82c3301",  # variant 7
        "../" + U1,
        U1 + "/..",
        U1[:-3] + "%2F",
        U1 + "?x=1",
        U1 + "#",
        "%2e%2e%2f",
        U1.replace("-", ""),
        "{" + U1 + "}",
        U1 + "0",
        U1[:-1],
        "3f2504e0-4f89-41d3-9a0c-0305e82c330g",
        "３f2504e0-4f89-41d3-9a0c-0305e82c3301",
        "\ufeff" + U1,
        "x",
    ],
)
def test_bad_ids_are_invalid_and_never_sent(bad_id: str) -> None:
    """Ids not matching the API pattern exactly (case, version, variant, path or URL chars) are invalid."""
    record = invalid(only(read(f"id\n{bad_id}\n")), INVALID_ID)
    assert record.id == bad_id
    assert record.line == 2
    assert "does not match the API's instance id pattern" in (record.error_msg or "")


def test_upper_case_id_reason_says_so() -> None:
    """An upper-case id's reason says upper case is not accepted (nothing is case-folded)."""
    record = invalid(only(read(f"id\n{U1.upper()}\n")), INVALID_ID)
    assert "upper-case" in (record.error_msg or "")


def test_id_with_trailing_newline_in_quotes_is_invalid() -> None:
    """A trailing newline inside a quoted id does not slip past the pattern (as `$` would let it)."""
    invalid(only(read(f'id\n"{U1}\n"\n')), INVALID_ID)
    assert not is_valid_instance_id(U1 + "\n")


def test_empty_id_is_invalid() -> None:
    """An empty id cell (or a row too short for the id column) is invalid."""
    records = read(f"project_id,id\n{Q},\n{Q}\n,,\n")
    assert [invalid(r, INVALID_ID).error_msg for r in records] == ["empty id"] * 3


@pytest.mark.parametrize(
    "bad_project",
    [
        "a/b",
        "..",
        "../x",
        "%2F",
        "a%2Fb",
        "a b",
        "proj\u00e9",
        "项目",
        "a" * 65,
        "a.b",
        "a?b",
        "a#b",
        "\u00a0",
    ],
)
def test_bad_project_ids_are_invalid(bad_project: str) -> None:
    """Project IDs that are not 1-64 characters of [A-Za-z0-9_-] are invalid, never sent."""
    record = invalid(only(read(f"id,project_id\n{U1},{bad_project}\n")), INVALID_PROJECT_ID)
    assert record.project_id == bad_project
    assert record.id == U1


def test_sixty_four_character_project_is_valid() -> None:
    """A 64-character project ID of the allowed alphabet is accepted."""
    project = "A-_z" * 16
    assert read(f"id,project_id\n{U1},{project}\n") == [Target(2, project, U1)]


def test_invalid_fields_are_clipped_in_records() -> None:
    """An invalid row's id and project text is cut to SHOWN_CHARS so the report stays bounded."""
    record = invalid(only(read(f"project_id,id\n{'p' * 5000},{'i' * 5000}\n")), INVALID_ID)
    assert record.id is not None and len(record.id) == SHOWN_CHARS
    assert record.project_id is not None and len(record.project_id) == SHOWN_CHARS
    assert len(record.error_msg or "") < 200


def test_validators() -> None:
    """The exported validators accept exactly the contract's patterns."""
    assert is_valid_instance_id(U1) and is_valid_instance_id(U4)
    assert not is_valid_instance_id(U1.upper())
    assert not is_valid_instance_id(U1 + "\n")
    assert INSTANCE_ID_RE.fullmatch(U2) is not None
    assert is_valid_project_id(P) and is_valid_project_id("a") and is_valid_project_id("x" * 64)
    assert not is_valid_project_id("") and not is_valid_project_id("x" * 65)
    assert not is_valid_project_id(P + "\n")


# --- duplicates ----------------------------------------------------------------------------------------


def test_duplicates_are_skipped_naming_the_first_line() -> None:
    """A repeated (project_id, id) is `skipped` as a duplicate of its first line and not sent."""
    records = read(f"id,project_id\n{U1},{P}\n{U2},{P}\n {U1} ,\n{U1},{Q}\n")
    assert records[:2] == [Target(2, P, U1), Target(3, P, U2)]
    dup = records[2]
    assert isinstance(dup, Result)
    assert dup.outcome is Outcome.SKIPPED
    assert (dup.line, dup.project_id, dup.id) == (4, P, U1)
    assert dup.error_code == DUPLICATE
    assert dup.error_msg == "duplicate of line 2"
    assert records[3] == Target(5, Q, U1)


def test_invalid_rows_do_not_count_as_first_occurrence() -> None:
    """An invalid row never enters the duplicate index; the first valid occurrence is the one sent."""
    records = read(f"id,project_id\n{U1},bad/project\n{U1},{P}\n")
    invalid(records[0], INVALID_PROJECT_ID)
    assert records[1] == Target(3, P, U1)


def test_shared_seen_index_is_used() -> None:
    """A caller's SeenIndex is the one filled, so keys it already holds are duplicates."""
    index = SeenIndex()
    index.add(P, U1, 7)
    records = read(f"{U1}\n{U2}\n", seen=index)
    assert isinstance(records[0], Result) and records[0].error_msg == "duplicate of line 7"
    assert records[1] == Target(2, P, U2)
    assert (P, U2) in index


class Repeat(io.RawIOBase):
    """A lazily generated stream: `line` repeated `times` times, never held whole in memory."""

    def __init__(self, line: bytes, times: int) -> None:
        self._block = line * 4096
        self._blocks, rest = divmod(times, 4096)
        self._tail = line * rest
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._buf:
            if self._blocks:
                self._blocks -= 1
                self._buf = memoryview(self._block)
            elif self._tail:
                self._buf, self._tail = memoryview(self._tail), b""
            else:
                return 0
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


@pytest.mark.slow
def test_a_million_duplicates_send_one_and_skip_the_rest() -> None:
    """A million identical rows give exactly one Target and 999,999 duplicates, with a tiny index."""
    index = SeenIndex()
    counts: Counter[object] = Counter()
    last = None
    for record in read_targets(Repeat(f"{U1}\n".encode(), 1_000_000), default_project=P, seen=index):
        counts[record.outcome if isinstance(record, Result) else "target"] += 1
        last = record
    assert counts == {"target": 1, Outcome.SKIPPED: 999_999}
    assert isinstance(last, Result) and last.line == 1_000_000 and last.error_msg == "duplicate of line 1"
    assert len(index) == 1
    assert index.nbytes < 1024


# --- sources, closing, counting ------------------------------------------------------------------------


def test_path_and_pathlike_sources(tmp_path: Path) -> None:
    """INPUT may be a str path or a PathLike."""
    path = tmp_path / "ids.csv"
    path.write_text(f"id\n{U1}\n")
    assert list(read_targets(str(path), default_project=P)) == [Target(2, P, U1)]
    assert list(read_targets(path, default_project=P)) == [Target(2, P, U1)]


def test_dash_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """INPUT `-` reads standard input, as bytes through its buffer."""
    stdin = io.TextIOWrapper(io.BytesIO(f"{U1}\r\n\xff\n".encode("latin-1")), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    records = list(read_targets("-", default_project=P))
    assert records[0] == Target(1, P, U1)
    invalid(records[1], INVALID_ROW)
    assert count_rows("-") is None


def test_text_stream_without_buffer() -> None:
    """A text stream without a byte buffer (StringIO) is read too."""
    records = list(read_targets(io.StringIO(f"id\n{U1}\n\ud800\n"), default_project=P))
    assert records[0] == Target(2, P, U1)
    invalid(records[1], INVALID_ROW)


def test_reader_closes_the_file_it_opened(tmp_path: Path) -> None:
    """The reader closes the file it opened when exhausted, when closed, and as a context manager."""
    path = tmp_path / "ids.csv"
    path.write_text(f"{U1}\n{U2}\n")
    reader = read_targets(path, default_project=P)
    file = reader._file
    assert file is not None and not file.closed
    assert len(list(reader)) == 2
    assert file.closed
    with read_targets(path, default_project=P) as reader2:
        file2 = reader2._file
        assert next(reader2) == Target(1, P, U1)
    assert file2 is not None and file2.closed


def test_reader_never_closes_a_stream_it_was_given() -> None:
    """A stream passed in stays open for its owner."""
    stream = io.BytesIO(f"{U1}\n".encode())
    with read_targets(stream, default_project=P) as reader:
        assert list(reader) == [Target(1, P, U1)]
    assert not stream.closed


def test_reader_presizes_the_index_from_the_row_count(tmp_path: Path) -> None:
    """Reading a file counts its rows first, for a progress total and a duplicate index that never grows."""
    path = tmp_path / "ids.csv"
    path.write_text("id\n" + "".join(f"{i:08x}-0000-4000-8000-000000000000\n" for i in range(3000)))
    reader = TargetReader(path, default_project=P)
    assert reader.total == 3000
    capacity = reader.seen.capacity
    assert sum(1 for _ in reader) == 3000
    assert reader.seen.capacity == capacity and len(reader.seen) == 3000
    assert reader.header == ("id",)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0),
        (b"\n \n\t\r\n", 0),
        (b"id\n", 0),
        (b"id\r\n\r\n", 0),
        (f"{U1}\n{U2}".encode(), 2),
        (f"{U1}\n\n  \n{U2}\n".encode(), 2),
        (f"\xef\xbb\xbfid,project_id\r\n{U1},p\r\n\r\n{U2},p\r\n".encode(), 2),
        (f'"id"\n"{U1}"\n'.encode(), 1),
        (f"bad\n{U1}\n".encode(), 1),
        (b"x" * (3 << 20) + b"\n" + U1.encode() + b"\n\n", 2),
    ],
)
def test_count_rows(data: bytes, expected: int, tmp_path: Path) -> None:
    """count_rows counts non-blank lines less a header, for a file or a seekable stream."""
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    assert count_rows(path) == expected
    stream = io.BytesIO(b"junk\n" + data)
    stream.readline()
    assert count_rows(stream) == expected
    assert stream.tell() == 5


def test_count_rows_agrees_with_the_reader_across_chunks(tmp_path: Path) -> None:
    """count_rows matches the number of rows read, for a file spanning several read chunks."""
    path = tmp_path / "in.csv"
    lines = [f"{i:08x}-0000-4000-8000-000000000000" if i % 7 else " \t" for i in range(70_000)]
    path.write_text("id\n" + "\n".join(lines) + "\n")
    assert count_rows(path) == sum(1 for _ in read_targets(path, default_project=P))


def test_count_rows_of_non_seekable_or_special_inputs(tmp_path: Path) -> None:
    """count_rows is None for a pipe or a non-seekable stream, and an InputError for a missing file."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert count_rows(fifo) is None
    assert count_rows(Repeat(b"x\n", 3)) is None
    with pytest.raises(InputError, match="does not exist"):
        count_rows(tmp_path / "missing.csv")


# --- properties and memory -----------------------------------------------------------------------------

FORBIDDEN = set("/%?#.") | {" ", "\t", "\n", "\r", "\x0b", "\x0c", "\u00a0"}

row_text = st.one_of(
    st.text(max_size=60),
    st.sampled_from([U1, U2, U3, U4, U1.upper(), P, Q, "", " ", '"', ",", "\r", "\n", "../", "%2F"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(row_text, min_size=1, max_size=4).map(",".join), max_size=30))
def test_targets_from_arbitrary_text_are_always_safe(lines: list[str]) -> None:
    """Whatever the text, every Target has a pattern-valid id and project, free of path or URL characters."""
    data = ("id,project_id\n" + "\n".join(lines)).encode("utf-8", "surrogatepass")
    for record in read(data):
        assert record.line >= 2
        if isinstance(record, Target):
            assert is_valid_instance_id(record.id)
            assert is_valid_project_id(record.project_id)
            assert not FORBIDDEN & set(record.id + record.project_id)
        else:
            assert record.outcome in (Outcome.INVALID, Outcome.SKIPPED)


cell = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    st.sampled_from([U1, U2, U3, P, Q, "", " \t", "a,b", 'say "x"', "two\nlines", "cr\r\nlf"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(cell, min_size=1, max_size=4), max_size=30))
def test_one_record_per_non_blank_csv_row(rows: list[list[str]]) -> None:
    """For any CSV rows, the reader yields exactly one record per non-blank row, at its physical line."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["id", "project_id", "note", "more"])
    expected_lines: list[int] = []
    line = 2
    for row in rows:
        start = out.tell()
        writer.writerow(row)
        text = out.getvalue()[start:]
        if text.strip(" \t\r\n"):
            expected_lines.append(line)
        line += text.count("\n")
    records = read(out.getvalue())
    assert [r.line for r in records] == expected_lines
    for record in records:
        if isinstance(record, Target):
            assert is_valid_instance_id(record.id) and is_valid_project_id(record.project_id)


@pytest.mark.slow
def test_memory_stays_small_over_200k_rows(tmp_path: Path) -> None:
    """Reading 200,000 rows holds one row at a time: traced memory peaks at a few MB (mostly the index)."""
    path = tmp_path / "ids.csv"
    with path.open("w") as f:
        f.write("project_id,id,note\n")
        for i in range(200_000):
            f.write(f"{P if i % 2 else Q},{i:08x}-0000-4000-8000-{i:012x},row {i}\n")
    tracemalloc.start()
    try:
        n = 0
        for _ in read_targets(path, default_project=None):
            n += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 200_000
    assert peak < 15_000_000
