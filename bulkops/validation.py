"""The two patterns every target must pass before any request is built from it.

`INSTANCE_ID_RE` is the API's own constraint on `id`; `PROJECT_ID_RE` is bulkops' safe shape for a
project id (1 to 64 of `[A-Za-z0-9_-]`; real ones are 32 hex digits). Both are matched with `fullmatch`, so
a trailing newline never slips through as `$` would let it. The reader, the engine and the URL builder
all check with these, so a bad row can never become a request path.
"""

from __future__ import annotations

import re

INSTANCE_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
PROJECT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

_id_match = INSTANCE_ID_RE.fullmatch
_project_match = PROJECT_ID_RE.fullmatch


def is_valid_instance_id(value: str) -> bool:
    """True when `value` is exactly an instance id the API accepts."""
    return _id_match(value) is not None


def is_valid_project_id(value: str) -> bool:
    """True when `value` is a safe project id (1-64 of A-Z a-z 0-9 _ -)."""
    return _project_match(value) is not None
