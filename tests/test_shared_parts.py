"""The pure parts of shared limits: GCRA on plain numbers, the fallback's share, names and redaction."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from bulkops.cloud.auth import Credentials
from bulkops.options import RateLimit
from bulkops.redis.fallback import PACING, Fallback, SharedView
from bulkops.redis.gcra import LocalGcra
from bulkops.redis.naming import PREFIX, Keys, credential_name, redact_url, url_password


def test_gcra_sends_a_burst_then_one_per_interval() -> None:
    """A fresh bucket of 4 sends 3 at once (one held back), then one every 1/rate seconds."""
    bucket = LocalGcra(2.0, 4.0, now=100.0)
    waits = [bucket.reserve(100.0) for _ in range(6)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.5])


def test_gcra_refills_after_an_idle_spell_up_to_its_capacity_less_the_margin() -> None:
    """After a long idle spell a bucket bursts `capacity` less the tokens it holds back (one at 1/s), never
    more: the gateway's bucket of the same shape is full then, and arrival noise must not outrun it."""
    bucket = LocalGcra(1.0, 3.0, now=0.0)
    for _ in range(5):
        bucket.reserve(0.0)
    waits = [bucket.reserve(1000.0) for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.0, 1.0, 2.0])


def test_gcra_holds_back_a_quarter_second_of_a_fast_bucket() -> None:
    """At 40/s with a burst of 40, a fresh or idle bucket sends 30 at once (START_MARGIN: 10 held back)."""
    bucket = LocalGcra(40.0, 40.0, now=0.0)
    waits = [bucket.reserve(0.0) for _ in range(31)]
    assert waits == pytest.approx([0.0] * 30 + [0.025], abs=1e-9)
    later = [bucket.reserve(100.0) for _ in range(31)]
    assert later == pytest.approx([0.0] * 30 + [0.025], abs=1e-9)


def test_gcra_keeps_what_is_owed_in_requests_when_the_rate_changes() -> None:
    """Halving the rate doubles the wait of the requests already owed."""
    bucket = LocalGcra(10.0, 1.0, now=0.0)
    for _ in range(5):
        bucket.reserve(0.0)  # 0.5 s owed at 10/s: five requests
    bucket.set_rate(0.0, 5.0)
    assert bucket.reserve(0.0) == pytest.approx(1.0)  # five requests at 5/s


def test_gcra_hold_sends_nothing_before_its_end_and_no_burst_after() -> None:
    """A hold (Retry-After) parks the bucket; after it, one request, then the rate again."""
    bucket = LocalGcra(4.0, 8.0, now=0.0)
    bucket.hold(0.0, 3.0)
    assert [bucket.reserve(1.0), bucket.reserve(1.0)] == pytest.approx([2.0, 2.25])


def test_fallback_paces_at_the_shared_rate_divided_by_the_runners() -> None:
    """With Redis away, each of 4 runners sends a quarter of the last shared rate."""
    fallback = Fallback()
    fallback.views["p"] = SharedView(ceiling=20.0 * PACING, learned=8.0, runners=4)
    waits = [fallback.reserve(0.0, "p", RateLimit(20.0, 1.0), None) for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.5, 1.0, 1.5])  # 8/s shared, 2/s each


def test_fallback_for_an_unseen_project_uses_the_configured_rate_and_the_runners_last_seen() -> None:
    """A project never shared is paced at its configured rate over the runners in the scope."""
    fallback = Fallback()
    fallback.runners = 2
    waits = [fallback.reserve(0.0, "new", RateLimit(10.0, 1.0), None) for _ in range(3)]
    interval = 2 / (10.0 * PACING)
    assert waits == pytest.approx([0.0, interval, 2 * interval])


def test_fallback_applies_learning_and_holds_locally() -> None:
    """A rate learned and a hold while Redis is away apply to this runner's local bucket."""
    fallback = Fallback()
    fallback.views["p"] = SharedView(ceiling=math.inf, learned=None, runners=1)
    fallback.learn(0.0, "p", rate=1.0, hold_for=5.0)
    assert fallback.reserve(0.0, "p", RateLimit(100.0, 1.0), None) == pytest.approx(5.0)
    assert fallback.reserve(0.0, "p", RateLimit(100.0, 1.0), None) == pytest.approx(6.0)
    assert fallback.rate("p") == 1.0


def test_redacted_urls_hide_every_password_form() -> None:
    """A password in the userinfo or the query never survives redaction; the host stays readable."""
    cases = {
        "redis://:s3cret@cache:6379/0": "redis://:***@cache:6379/0",
        "rediss://ops:s3cret@cache:6380": "rediss://ops:***@cache:6380",
        "redis://s3cret@cache": "redis://***@cache",
        "unix:///run/redis.sock?db=1&password=s3cret": "unix:///run/redis.sock?db=1&password=***",
        "redis://cache:6379": "redis://cache:6379",
    }
    for url, shown in cases.items():
        assert redact_url(url) == shown
        assert "s3cret" not in redact_url(url)
    assert url_password("unix:///run/redis.sock?password=s3cret") == "s3cret"
    assert url_password("redis://:s3cret@cache") == "s3cret"


def test_keys_are_named_by_hashes_under_one_hash_tag() -> None:
    """Scopes are named by hashes of the endpoint and the credential, under `bulkops:{rl}:`."""
    creds = Credentials(ak="AKEXAMPLE0001", sk="SKEXAMPLESECRET")
    keys = Keys.of("https://ModelArts.example.com/", creds)
    assert keys.scope.startswith(PREFIX)
    assert keys.scope == Keys.of("https://modelarts.example.com", creds).scope  # normalised endpoint
    assert "AKEXAMPLE0001" not in keys.scope and credential_name(creds) in keys.scope
    assert keys.project("p1").endswith(":p:p1") and keys.project("*").endswith(":g")
    assert credential_name(creds) != credential_name(Credentials(auth_token="a-token"))


def test_importing_the_redis_package_does_not_load_redis_py() -> None:
    """`bulkops.redis` loads redis-py only when a client is opened (start-up stays as fast)."""
    code = "import sys, bulkops.redis, bulkops.cli.command_limits; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
