"""Region name -> ModelArts endpoint, as the official SDK's region table has it.

Copied from `huaweicloudsdkmodelarts/v1/region/modelarts_region.py` (SDK 3.1.219) so that bulkops does not
depend on the SDK at run time; `tests/test_regions.py` checks this table against the SDK's. Most regions
follow `https://modelarts.<region>.myhuaweicloud.com`; a few differ (ap-southeast-1 ends in `.cn`), which is
why the table, not the pattern, decides. A region not in the table is refused by the command line
(`unknown_region` names the closest known ones); `--endpoint URL` reaches any other.
"""

from __future__ import annotations

import difflib

from bulkops.errors import ConfigError

ENDPOINTS: dict[str, str] = {
    "af-north-1": "https://modelarts.af-north-1.myhuaweicloud.com",
    "af-south-1": "https://modelarts.af-south-1.myhuaweicloud.com",
    "ap-southeast-1": "https://modelarts.ap-southeast-1.myhuaweicloud.cn",
    "ap-southeast-2": "https://modelarts.ap-southeast-2.myhuaweicloud.com",
    "ap-southeast-3": "https://modelarts.ap-southeast-3.myhuaweicloud.com",
    "ap-southeast-4": "https://modelarts.ap-southeast-4.myhuaweicloud.com",
    "cn-east-3": "https://modelarts.cn-east-3.myhuaweicloud.com",
    "cn-east-4": "https://modelarts.cn-east-4.myhuaweicloud.com",
    "cn-north-1": "https://modelarts.cn-north-1.myhuaweicloud.com",
    "cn-north-11": "https://modelarts.cn-north-11.myhuaweicloud.com",
    "cn-north-12": "https://modelarts.cn-north-12.myhuaweicloud.com",
    "cn-north-2": "https://modelarts.cn-north-2.myhuaweicloud.com",
    "cn-north-4": "https://modelarts.cn-north-4.myhuaweicloud.com",
    "cn-north-9": "https://modelarts.cn-north-9.myhuaweicloud.com",
    "cn-south-1": "https://modelarts.cn-south-1.myhuaweicloud.com",
    "cn-southwest-2": "https://modelarts.cn-southwest-2.myhuaweicloud.com",
    "cn-southwest-3": "https://modelarts.cn-southwest-3.myhuaweicloud.com",
    "la-north-2": "https://modelarts.la-north-2.myhuaweicloud.com",
    "la-south-2": "https://modelarts.la-south-2.myhuaweicloud.com",
    "me-east-1": "https://modelarts.me-east-1.myhuaweicloud.com",
    "sa-brazil-1": "https://modelarts.sa-brazil-1.myhuaweicloud.com",
    "tr-west-1": "https://modelarts.tr-west-1.myhuaweicloud.com",
}


def endpoint_for(region: str) -> tuple[str, bool]:
    """(endpoint URL, whether the region is in the SDK's table) for a region name."""
    region = region.strip()
    if not region or not all(c.isalnum() or c == "-" for c in region):
        raise ConfigError(f"--region must be a region name like cn-north-4, got {region!r}")
    known = ENDPOINTS.get(region)
    if known is not None:
        return known, True
    return f"https://modelarts.{region}.myhuaweicloud.com", False


def unknown_region(region: str) -> str:
    """The one-line error for a region not in the table, naming the closest known regions (difflib)."""
    close = difflib.get_close_matches(region, ENDPOINTS, n=3, cutoff=0.6)
    if not close:
        hint = f"known: {', '.join(sorted(ENDPOINTS))}"
    else:
        names = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
        hint = f"did you mean {names}?"
    return f"unknown --region {region!r}: {hint} (--endpoint URL reaches a region not in the SDK's table)"
