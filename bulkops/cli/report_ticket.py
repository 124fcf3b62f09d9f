"""`bulkops report summarize --format markdown`: a report as a change ticket's comment.

What a reviewer asks of a bulk change: what was run (the command line), when (start and end), on which
evidence (the report's path, size and SHA-256, the input's fingerprint), what happened (rows per outcome
and per project) and what did not work and why (each failed row with its error; the error codes). The
figures are `io.ticket.Ticket`'s; this module only lays them out as GitHub-flavoured Markdown. Text that
came from a server (error messages) is made safe for a table cell: one line, `|` escaped, cut.
"""

from __future__ import annotations

from typing import Any

from bulkops.io.ticket import Ticket
from bulkops.models import Outcome
from bulkops.wording import counted

__all__ = ["render_markdown"]

_ORDER = [o.value for o in Outcome]
_CELL = 160
_WHOLE = 4000  # a command line or a path is shown whole (up to this)


def _cell(value: Any, limit: int = _CELL) -> str:
    """`value` fit for a Markdown table cell: one line, pipes escaped, cut to `limit` characters."""
    text = " ".join(str("" if value is None else value).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _code(value: Any, limit: int = _CELL) -> str:
    """`value` as inline code (a backtick inside becomes a quote: code spans cannot escape it)."""
    if value is None or value == "":
        return "-"
    return "`" + _cell(value, limit).replace("`", "'") + "`"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def render_markdown(t: Ticket) -> str:
    """The ticket as Markdown."""
    d = t.digest
    outcomes = [o for o in _ORDER if o in d.outcomes] + sorted(set(d.outcomes) - set(_ORDER))
    share = f" ({100 * d.succeeded / d.rows:.1f}%)" if d.rows else ""
    out = [f"### bulkops report: {_code(t.path, _WHOLE)}", ""]
    facts = [
        ["Command", _code(t.command, _WHOLE)],
        ["Started", _cell(t.started or "-")],
        ["Ended", _cell(t.ended or "-") + ("" if t.ended_from == "run" else " (last record)")],
        ["Report", _code(t.path, _WHOLE) + (f", {t.size} bytes" if t.size is not None else "")],
        ["Report SHA-256", _code(t.sha256)],
    ]
    if t.meta.get("input"):
        facts.append(["Input", f"{_code(t.meta['input'], _WHOLE)}, SHA-256 {_code(t.meta.get('sha256'))}"])
    facts.append(["Rows", f"{d.rows}: {d.succeeded} succeeded{share}, {d.rows - d.succeeded} did not"])
    if len(t.runs) > 1:
        facts.append(["Runs", f"{len(t.runs)} (resumed {len(t.runs) - 1} times)"])
    out += _table(["", ""], facts)
    out += ["", "#### Outcomes", ""]
    out += _table(["outcome", "rows"], [[o, str(d.outcomes[o])] for o in outcomes])
    out += ["", "#### Per project", ""]
    rows = [
        [_code(p), *(str(c.get(o, 0)) for o in outcomes), str(sum(c.values()))]
        for p, c in sorted(d.per_project.items())
    ]
    out += _table(["project", *outcomes, "total"], rows)
    errors = d.top_errors()
    if errors:
        more = f" (top {len(errors)} of {len(d.errors)})" if len(d.errors) > len(errors) else ""
        out += ["", f"#### Error codes{more}", ""]
        out += _table(
            ["code", "rows", "sample message"], [[_code(c), str(e.count), _cell(e.sample)] for c, e in errors]
        )
    unsuccessful = d.rows - d.succeeded
    out += ["", f"#### Rows that did not succeed ({unsuccessful})", ""]
    if t.failures:
        out += _table(
            ["line", "project", "id", "outcome", "error", "reason"],
            [
                [str(r.get("line")), _code(r.get("project_id")), _code(r.get("id")), _cell(r.get("outcome")),
                 _code(r.get("error_code") or (f"HTTP {r['http_status']}" if r.get("http_status") else None)),
                 _cell(r.get("error_msg") or "")]
                for r in t.failures
            ],
        )  # fmt: skip
    elif not unsuccessful:
        out.append("None.")
    if t.unlisted:
        why = "standard input is read once" if t.path == "-" else f"`bulkops report failed {t.path}` lists"
        out += ["", f"{counted(t.unlisted, 'more row')} not listed here ({why})."]
    if len(t.runs) > 1:
        out += ["", "#### Runs", ""]
        out += _table(
            ["started", "ended", "command"],
            [
                [_cell(r.get("started")), _cell(r.get("ended")), _code(r.get("command"), _WHOLE)]
                for r in t.runs
            ],
        )
    return "\n".join(out) + "\n"
