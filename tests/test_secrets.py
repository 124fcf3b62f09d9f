"""Secrets: the AK, SK, security token and IAM token never appear in logs, reports or error messages.

Real `bulkops stop` processes run with distinctive credentials against a simulator that accepts some of them,
at `--log-level debug` in both log formats, succeeding and failing (wrong SK, wrong token, a refused
endpoint, a credential with a stray carriage return), with faults so that retries are logged. Every byte of
their stdout, stderr and report is searched for each secret, raw, base64- and percent-encoded.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from _reliability import SimThread, cli_env, kill, spawn

from bulkops.cloud.auth import Credentials
from bulkops.options import Options
from bulkops.simulator import AccessKey, FaultShares, InventorySpec, SimulatorConfig, write_csv

AK = "AKLEAKCHECK7Q3ZPXW2M"
SK = "skLeakCheck/Secret+Value=9f8e7d6c5b4a"
SECURITY_TOKEN = "stLeakCheckSecurityToken_5ad41f0e"
AUTH_TOKEN = "itLeakCheckIamToken.MIIRbwYJKoZIhvcNAQcCoIIRYDCCEVwC"
WRONG_SK = "skWrongLeakCheck/Other+Secret=0a1b2c3d"
WRONG_TOKEN = "itWrongLeakCheckIamToken.MIIZZZ"
SECRETS = (AK, SK, SECURITY_TOKEN, AUTH_TOKEN, WRONG_SK, WRONG_TOKEN)


def forms(secret: str) -> list[bytes]:
    """The secret as it could leak: raw, base64, URL-safe base64, percent-encoded, and its middle part."""
    raw = secret.encode()
    return [
        raw,
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw),
        quote(secret, safe="").encode(),
        raw[4:-4],  # a cut or re-wrapped copy still shows its middle
    ]


@pytest.mark.slow
def test_no_secret_in_any_output_of_succeeding_and_failing_runs(tmp_path: Path) -> None:
    """Succeeding and failing runs, debug logs in JSON and console form: no secret in stdout, stderr or
    report, in any encoding."""
    config = SimulatorConfig(
        seed=9,
        inventory=InventorySpec(
            projects=2, instances_per_project=15, status_mix={"RUNNING": 0.9, "STOPPED": 0.1}, seed=9
        ),
        access_keys=(AccessKey(AK, SK, SECURITY_TOKEN),),
        auth_tokens=frozenset({AUTH_TOKEN}),
        # Ten runs draw from one seeded fault stream in arrival order, so which run meets a fault varies.
        # At 15 % a succeeding run of 30 requests met none about one time in a hundred (0.85 ** 30); at
        # 25 %, about one in 5,000. Twelve attempts keep a row from failing on faults alone (0.25 ** 12),
        # and the retry budget (26 here) is 4 standard deviations above the ~10 retries expected.
        faults=FaultShares(http_503=0.15, reset=0.1),
    )
    aksk = {
        "HUAWEICLOUD_SDK_AK": AK,
        "HUAWEICLOUD_SDK_SK": SK,
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": SECURITY_TOKEN,
    }
    wrong_sk = {**aksk, "HUAWEICLOUD_SDK_SK": WRONG_SK}
    token = {"BULKOPS_AUTH_TOKEN": AUTH_TOKEN}
    runs: dict[str, tuple[dict[str, str], list[str], int]] = {
        "aksk-json": (aksk, ["--log-format", "json"], 0),
        "aksk-console": (aksk, ["--log-format", "console"], 0),
        "aksk-stdout-report": (aksk, ["--log-format", "json", "--report", "-"], 0),
        "wrong-sk-json": (wrong_sk, ["--log-format", "json"], 1),
        "wrong-sk-console": (wrong_sk, ["--log-format", "console"], 1),
        "token-json": (token, ["--log-format", "json"], 0),
        "wrong-token-console": ({"BULKOPS_AUTH_TOKEN": WRONG_TOKEN}, ["--log-format", "console"], 1),
        "plain-http-refused": (aksk, ["--log-format", "json", "--endpoint", "http://192.0.2.1:8080"], 2),
        "token-with-cr": ({"BULKOPS_AUTH_TOKEN": AUTH_TOKEN + "\r"}, ["--log-format", "console"], 2),
        "sk-with-newline": ({**aksk, "HUAWEICLOUD_SDK_SK": SK + "\n"}, ["--log-format", "json"], 2),
    }
    csv_path = tmp_path / "in.csv"
    outputs: dict[str, tuple[int, bytes, bytes, bytes]] = {}
    with SimThread(config) as sim:
        write_csv(sim.inventory, csv_path)
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name, (env, extra, _) in runs.items():
                args = ["stop", str(csv_path), "--endpoint", sim.url, "--yes", "--log-level", "debug"]
                if "--report" not in extra:
                    args += ["--report", str(tmp_path / f"{name}.jsonl")]
                args += ["--max-attempts", "12", "--concurrency", "4", "--rate", "200", *extra]
                procs[name] = spawn(args, cli_env(**env))
            for name, proc in procs.items():
                out, err = proc.communicate(timeout=60)
                path = tmp_path / f"{name}.jsonl"
                outputs[name] = (proc.returncode, out, err, path.read_bytes() if path.exists() else b"")
        finally:
            for proc in procs.values():
                kill(proc)

    for name, (code, out, err, report) in outputs.items():
        assert code == runs[name][2], (name, err.decode(errors="replace")[-3000:])
        assert b"Traceback" not in err
        for secret in SECRETS:
            for form in forms(secret):
                for where, data in (("stdout", out), ("stderr", err), ("report", report)):
                    assert form not in data, f"{name}: a form of a secret is in its {where}"
    # The runs really logged at debug level and really failed where they should.
    assert b"bulkops.stop.retry" in outputs["aksk-json"][2]
    assert b"bulkops.circuit.open" in outputs["wrong-sk-json"][2]
    assert b"APIGW.0301" in outputs["wrong-sk-json"][3]
    # Runs share the fleet, so a row is accepted by one run and already_stopped for the others.
    stdout_report = [json.loads(line) for line in outputs["aksk-stdout-report"][1].splitlines()]
    assert len(stdout_report) == 30 and all(
        r["outcome"] in ("accepted", "already_stopped") for r in stdout_report
    )
    assert b"bulkops: error: BULKOPS_AUTH_TOKEN holds a control character" in outputs["token-with-cr"][2]
    assert b"bulkops: error: HUAWEICLOUD_SDK_SK holds a control character" in outputs["sk-with-newline"][2]


def test_credentials_and_options_never_show_a_secret_in_repr() -> None:
    """A credential inside Options (as in a traceback's or debugger's repr) shows only its kind."""
    for creds in (
        Credentials(ak=AK, sk=SK, security_token=SECURITY_TOKEN),
        Credentials(auth_token=AUTH_TOKEN),
    ):
        text = repr(Options(endpoint="https://modelarts.example.com", credentials=creds)) + str(creds)
        assert not any(secret in text for secret in SECRETS)
        assert "kind=" in text
