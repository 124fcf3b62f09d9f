"""INPUT's records to validated, de-duplicated rows, streaming.

    read_targets(source, default_project=..., seen=...)  ->  Target | Result, one per non-blank row, in order

A row becomes a `Target` (valid, first of its (project_id, id): send it) or a final `Result`: `invalid`
(never sent; `error_code` is a tool code, `error_msg` the reason) or `skipped` (a duplicate, naming the first
line). `line` is the 1-based physical line where the row starts. The rules are the contract's "Input" section;
reading lines, encodings and CSV quoting is `bulkops.io.csvrows` (a line that cannot be read is one `invalid`
row); what the rest leaves open is decided here:

Opening
    Everything that makes the whole input unusable raises `InputError` with one line *before the first row
    is returned*: what `csvrows.open_input` refuses (a missing file, a directory, an unreadable file, a
    binary or UTF-16 first line), a header without an `id`/`instance_id` column, and a header whose project
    column is misspelt while a default project is set (below). `TargetReader` opens the input and reads its
    first row in its constructor for this reason. A `--project-id` that is not a valid project ID is a
    `ConfigError`, also raised there. An empty file, or a header alone, yields nothing.

Header
    The first non-blank row is a header when none of its fields, trimmed, is a valid instance ID. Names are
    trimmed of spaces and tabs and compared case-insensitively; `id` wins over `instance_id`; the first of
    repeated names counts. `project_id` is optional; a row whose `project_id` cell is empty or missing uses
    `default_project`. Without a header, each line is one instance ID: a line with a comma is `invalid`
    (expected one instance ID per line), since guessing which field is the id could stop the wrong instance.
    The other columns `bulkops list` writes (`name`, `status`, `flavor`) are ignored silently; other named
    columns are ignored, and named in one `bulkops.input.unknown_columns` warning. One of them
    that looks like a misspelt `project_id` (it holds "proj", or is within two edits of it) while the header
    has no `project_id` column and a default project is set (`--project-id`, `HUAWEICLOUD_SDK_PROJECT_ID`)
    is refused: every row would silently go to the default project, not to the one its cell names.

Fields
    Spaces and tabs around every field are trimmed, nothing else is changed: no case folding (an upper-case
    id is invalid), no URL decoding. Ids must fullmatch `INSTANCE_ID_RE`, project IDs `PROJECT_ID_RE` (both
    from `bulkops.validation`, re-exported here; `fullmatch`, because `$` would let a trailing newline
    through). Checks run id first, then project. An `invalid` record copies the raw trimmed id and
    project text, cut to `SHOWN_CHARS`, so a report stays bounded whatever the input holds. A quoted newline
    inside an id makes the id invalid, as any other character would.

Duplicates and memory
    A valid row whose (project_id, id) came on an earlier line is `skipped` with `error_msg`
    "duplicate of line N". The `SeenIndex` is the only state that grows with the input (about 16 bytes a
    distinct key); everything else is O(1).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO, Final

import structlog

from bulkops.errors import ConfigError, InputError
from bulkops.io.csvrows import BLANKS, TOO_LONG, Lines, Record, Source, open_input
from bulkops.io.rowcount import count_path
from bulkops.io.seen import SeenIndex
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
from bulkops.validation import INSTANCE_ID_RE, PROJECT_ID_RE, is_valid_instance_id, is_valid_project_id

__all__ = [
    "INSTANCE_ID_RE",
    "PROJECT_ID_RE",
    "SHOWN_CHARS",
    "Source",
    "TargetReader",
    "is_valid_instance_id",
    "is_valid_project_id",
    "read_targets",
]

#: An invalid row's id/project_id text is cut to this many characters in its record.
SHOWN_CHARS: Final = 200

log = structlog.get_logger("bulkops.input")

#: Columns read, and the ones `bulkops list` adds beside them (ignored without a warning).
_KNOWN_COLUMNS = frozenset({"id", "instance_id", "project_id", "name", "status", "flavor"})
_MAX_CACHED_PROJECTS = 10_000


def read_targets(
    source: Source, *, default_project: str | None, seen: SeenIndex | None = None
) -> TargetReader:
    """Open `source` and return an iterator of a `Target` or final `Result` for each non-blank row.

    Raises `InputError` (unusable input) or `ConfigError` (invalid `default_project`) at once, before any
    row is returned. `seen` is the duplicate index to fill; by default a new one sized for the file.
    The iterator closes a file it opened when exhausted or closed; use it as a context manager to be sure.
    """
    return TargetReader(source, default_project=default_project, seen=seen)


class TargetReader:
    """The rows of one INPUT, validated and de-duplicated; see the module docstring for the rules."""

    _file: BinaryIO | None = None

    def __init__(self, source: Source, *, default_project: str | None, seen: SeenIndex | None = None) -> None:
        """Open `source` and read its first row; raise `InputError`/`ConfigError` if it cannot be used."""
        if default_project is not None and not is_valid_project_id(default_project):
            raise ConfigError(
                f"--project-id {_show(default_project)} is not 1 to 64 characters of A-Z a-z 0-9 _ -"
            )
        self._default = default_project
        readline, self._file, self.name, path = open_input(source)
        try:
            #: Data rows counted up front (a progress total), for a regular file; else None.
            self.total: int | None = count_path(path) if path is not None else None
            self.seen: SeenIndex = seen if seen is not None else SeenIndex(self.total or 0)
            lines = Lines(readline, self.name)
            records = lines.records()
            first = next(records, None)
            self.header: tuple[str, ...] | None = None
            self._id_col = 0
            self._project_col: int | None = None
            if first is not None and not _holds_an_id(first[1]):
                self._read_header(first[1])
                first = None
            pending = () if first is None else (first,)
            self._rows = self._validate(itertools.chain(pending, records))
        except BaseException:
            self.close()
            raise

    def _read_header(self, fields: list[str] | None) -> None:
        names = tuple(f.strip(BLANKS) for f in fields or ())
        lowered = [n.lower() for n in names]
        for wanted in ("id", "instance_id"):
            if wanted in lowered:
                self._id_col = lowered.index(wanted)
                break
        else:
            shown = ", ".join(_show(n, 40) for n in names[:8]) + (", ..." if len(names) > 8 else "")
            raise InputError(
                f"header has no 'id' or 'instance_id' column: {shown} (the first line of {self.name} "
                "is read as a header because none of its fields is a valid instance ID)"
            )
        if "project_id" in lowered:
            self._project_col = lowered.index("project_id")
        self.header = names
        self._check_other_columns(names)

    def _check_other_columns(self, names: tuple[str, ...]) -> None:
        """Name the columns bulkops ignores; refuse one that looks like a misspelt `project_id` when every
        row would otherwise silently go to the default project."""
        unknown = list(dict.fromkeys(n for n in names if n and n.lower() not in _KNOWN_COLUMNS))
        lookalike = next((n for n in unknown if _looks_like_project_id(n.lower())), None)
        if lookalike is not None and self._project_col is None and self._default is not None:
            raise InputError(
                f"the header of {self.name} has no 'project_id' column but {_show(lookalike, 40)}, which"
                " looks like a misspelt one: every row would go to the default project"
                f" {_show(self._default)} (--project-id or HUAWEICLOUD_SDK_PROJECT_ID); name the column"
                " 'project_id', or remove it"
            )
        if unknown:
            shown = [n[:40] for n in unknown[:8]]
            log.warning("bulkops.input.unknown_columns", input=self.name, columns=shown, count=len(unknown))

    def __iter__(self) -> Iterator[Target | Result]:
        """The rows; iterating twice continues where the first iteration stopped."""
        return self._rows

    def __next__(self) -> Target | Result:
        """The next row."""
        return next(self._rows)

    def close(self) -> None:
        """Close the file this reader opened (never a stream it was given)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> TargetReader:
        """Use as a context manager that closes the input."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the input."""
        self.close()

    def __del__(self) -> None:
        """Close an owned file that was never read to the end, without a ResourceWarning."""
        self.close()

    def _validate(self, records: Iterator[Record]) -> Iterator[Target | Result]:
        """Turn records into rows; the hot loop, so everything it touches is a local."""
        headerless = self.header is None
        id_col = self._id_col
        project_col = self._project_col
        default = self._default
        projects: dict[str, str] = {} if default is None else {default: default}
        match_id = INSTANCE_ID_RE.fullmatch
        match_project = PROJECT_ID_RE.fullmatch
        add = self.seen.add_or_get
        try:
            for line, fields, problem in records:
                if fields is None or problem is not None:
                    yield self._bad_row(line, fields, problem or TOO_LONG)
                    continue
                if headerless:
                    if len(fields) != 1:
                        yield self._bad_row(
                            line,
                            fields,
                            f"{len(fields)} fields in a file without a header; "
                            "expected one instance ID per line",
                        )
                        continue
                    id = fields[0].strip(BLANKS)
                    project = default
                else:
                    n = len(fields)
                    id = fields[id_col].strip(BLANKS) if id_col < n else ""
                    if project_col is None or project_col >= n:
                        project = default
                    else:
                        project = fields[project_col].strip(BLANKS) or default
                if match_id(id) is None:
                    yield _invalid(line, project, id, INVALID_ID, _id_reason(id))
                    continue
                if project is None:
                    yield _invalid(line, None, id, MISSING_PROJECT_ID, _NO_PROJECT)
                    continue
                known = projects.get(project)
                if known is None:
                    if match_project(project) is None:
                        yield _invalid(line, project, id, INVALID_PROJECT_ID, _project_reason(project))
                        continue
                    known = project
                    if len(projects) < _MAX_CACHED_PROJECTS:
                        projects[known] = known
                earlier = add(known, id, line)
                if earlier is None:
                    yield Target(line, known, id)
                else:
                    yield Result(
                        line,
                        known,
                        id,
                        Outcome.SKIPPED,
                        error_code=DUPLICATE,
                        error_msg=f"duplicate of line {earlier}",
                    )
        finally:
            self.close()

    def _bad_row(self, line: int, fields: list[str] | None, reason: str) -> Result:
        """An invalid record for a row that could not be read or has the wrong shape."""
        if fields is None:
            return _invalid(line, None, None, INVALID_ROW, reason)
        if self.header is None:
            return _invalid(line, self._default, ",".join(fields).strip(BLANKS), INVALID_ROW, reason)
        n = len(fields)
        id = fields[self._id_col].strip(BLANKS) if self._id_col < n else None
        col = self._project_col
        project = fields[col].strip(BLANKS) if col is not None and col < n else None
        return _invalid(line, project or self._default, id, INVALID_ROW, reason)


_NO_PROJECT = "no project id: the row has none and no --project-id was given"


def _invalid(line: int, project: str | None, id: str | None, code: str, reason: str) -> Result:
    return Result(line, _clip(project), _clip(id), Outcome.INVALID, error_code=code, error_msg=reason)


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= SHOWN_CHARS:
        return text
    return text[: SHOWN_CHARS - 1] + "…"


def _show(text: str, width: int = 60) -> str:
    """`text` quoted for a message, cut to `width` characters."""
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def _id_reason(id: str) -> str:
    if not id:
        return "empty id"
    reason = f"id {_show(id)} does not match the API's instance id pattern"
    if INSTANCE_ID_RE.fullmatch(id.lower()):
        reason += " (upper-case hex is not accepted)"
    return reason


def _project_reason(project: str) -> str:
    return f"project id {_show(project)} is not 1 to 64 characters of A-Z a-z 0-9 _ -"


def _looks_like_project_id(name: str) -> bool:
    """Whether a lower-case column name may be a misspelt `project_id`: it holds "proj", or is near it."""
    return "proj" in name or _within_edits(name, "project_id", 2)


def _within_edits(text: str, word: str, most: int) -> bool:
    """Whether `text` is at most `most` single-character edits (insert, delete, replace) from `word`."""
    if abs(len(text) - len(word)) > most:
        return False
    previous = list(range(len(word) + 1))
    for i, a in enumerate(text, 1):
        current = [i]
        for j, b in enumerate(word, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1] <= most


def _holds_an_id(fields: list[str] | None) -> bool:
    """True when a first row is data: one of its fields, trimmed, is a valid instance ID."""
    if fields is None:  # an over-long first line: not a header, an invalid data row
        return True
    return any(INSTANCE_ID_RE.fullmatch(f.strip(BLANKS)) for f in fields)
