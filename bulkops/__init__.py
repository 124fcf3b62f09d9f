"""bulkops: stop Huawei Cloud ModelArts DevServer instances in bulk, safely and fast.

The public API is exactly what `__all__` lists (tests/test_public_api.py checks it):

    import bulkops

    options = bulkops.Options(endpoint="https://modelarts.cn-north-4.myhuaweicloud.com",
                              credentials=bulkops.Credentials.from_env())
    targets = bulkops.read_targets("ids.csv", default_project="0123...")
    async with bulkops.stop_instances(targets, options) as run:
        async for result in run:
            ...   # one bulkops.Result per input row, as it finishes

Everything else is an implementation module and may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bulkops.errors import BulkOpsError, ConfigError, InputError, ReportError
from bulkops.models import Outcome, Result, Target

if TYPE_CHECKING:
    from bulkops.cloud.auth import Credentials
    from bulkops.engine import Run, stop_instances
    from bulkops.io.report import ReportWriter
    from bulkops.io.resume import ResumeState, load_resume
    from bulkops.io.targets import read_targets
    from bulkops.options import Options, RateLimit, RetryPolicy
    from bulkops.summary import RunStats

__version__ = "0.1.0"

__all__ = [
    "BulkOpsError",
    "ConfigError",
    "Credentials",
    "InputError",
    "Options",
    "Outcome",
    "RateLimit",
    "ReportError",
    "ReportWriter",
    "Result",
    "ResumeState",
    "RetryPolicy",
    "Run",
    "RunStats",
    "Target",
    "__version__",
    "load_resume",
    "read_targets",
    "stop_instances",
]

# Imported on first use, so that `import bulkops` stays cheap (no aiohttp, no simulator, no hashing or
# option checks: `bulkops stop` installs its signal handlers right after this package loads).
_LAZY = {
    "Credentials": "bulkops.cloud.auth",
    "Options": "bulkops.options",
    "RateLimit": "bulkops.options",
    "RetryPolicy": "bulkops.options",
    "Run": "bulkops.engine",
    "stop_instances": "bulkops.engine",
    "ReportWriter": "bulkops.io.report",
    "ResumeState": "bulkops.io.resume",
    "load_resume": "bulkops.io.resume",
    "RunStats": "bulkops.summary",
    "read_targets": "bulkops.io.targets",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bulkops' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
