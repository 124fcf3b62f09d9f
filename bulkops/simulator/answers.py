"""What the simulator answers: the error catalogue, and the instance JSON the reference shows.

Error bodies are `{"error_code": ..., "error_msg": ...}` and are rendered once, at import, into bytes.

    HTTP  error_code       error_msg                                                  source
    400   ModelArts.6305   The instance is already running.                           documented
    400   ModelArts.6306   The instance is starting.                                  documented
    400   ModelArts.6307   The instance has already been stopped.                     documented
    400   ModelArts.6308   The instance is stopping.                                  documented
    400   ModelArts.6309   The instance does not exist. (also as 404)                 documented
    400   ModelArts.6310   The instance status does not allow this operation.         SIMULATOR-INVENTED
    401   APIGW.0301       Incorrect IAM authentication information: <short reason>   APIGW catalogue
    403   APIGW.0302       The IAM user is not authorized to access the API.          APIGW catalogue
    404   APIGW.0101       The API does not exist or has not been published ...       APIGW catalogue
    429   APIG.0308        The throttling threshold has been reached: policy <p> over ratelimit,
                           limit:<N>,time:1 second (or minute)                        API-NOTES
    500   ModelArts.0010   Internal service error.                                    ModelArts catalogue
    502   APIGW.0201       Backend unavailable.                                       APIGW catalogue
    503   APIGW.0201       Service unavailable.                                       SIMULATOR-CHOSEN
    504   APIGW.0201       Backend timeout.                                           APIGW catalogue

An operation refused for the instance's status is answered with the code of that status (`REFUSALS`:
RUNNING 6305, STARTING 6306, STOPPED 6307, STOPPING 6308; any other status 6310). The catalogue documents
6305-6308 (ModelArts "Error Codes"; 6306's description: "Other operations cannot be performed because the
instance is being started"); which code answers which operation in which status (a reboot of a STOPPED
instance: 6307; a start of a STOPPING one: 6308) is SIMULATOR-CHOSEN by that rule.

The 401 reasons are fixed phrases (never an echo of the request, so never a secret). The instance body has
the reference example's fields; everything but id, status and update_at is derived from a hash of the id,
so a GET after a stop shows the same name, flavor and create_at.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

JSON: Final = "application/json"


def error_body(code: str, msg: str) -> bytes:
    """The JSON body of an error answer."""
    return json.dumps({"error_code": code, "error_msg": msg}).encode()


ALREADY_RUNNING: Final = ("ModelArts.6305", "The instance is already running.")
STARTING: Final = ("ModelArts.6306", "The instance is starting.")
ALREADY_STOPPED: Final = ("ModelArts.6307", "The instance has already been stopped.")
STOPPING: Final = ("ModelArts.6308", "The instance is stopping.")
NOT_FOUND: Final = ("ModelArts.6309", "The instance does not exist.")
BAD_STATUS: Final = ("ModelArts.6310", "The instance status does not allow this operation.")
AUTH_FAILED: Final = "APIGW.0301"
FORBIDDEN: Final = ("APIGW.0302", "The IAM user is not authorized to access the API.")
NO_API: Final = ("APIGW.0101", "The API does not exist or has not been published in the environment.")
THROTTLED: Final = "APIG.0308"

#: status -> (error_code, body) of the 5xx answers a fault produces.
SERVER_ERRORS: Final[dict[int, tuple[str, bytes]]] = {
    status: (code, error_body(code, msg))
    for status, code, msg in (
        (500, "ModelArts.0010", "Internal service error."),
        (502, "APIGW.0201", "Backend unavailable."),
        (503, "APIGW.0201", "Service unavailable."),
        (504, "APIGW.0201", "Backend timeout."),
    )
}

BODY_ALREADY_STOPPED: Final = error_body(*ALREADY_STOPPED)
BODY_ALREADY_RUNNING: Final = error_body(*ALREADY_RUNNING)
BODY_STARTING: Final = error_body(*STARTING)
BODY_STOPPING: Final = error_body(*STOPPING)
BODY_NOT_FOUND: Final = error_body(*NOT_FOUND)
BODY_BAD_STATUS: Final = error_body(*BAD_STATUS)
BODY_FORBIDDEN: Final = error_body(*FORBIDDEN)
BODY_NO_API: Final = error_body(*NO_API)

#: The answer to an operation the instance's status does not allow: status -> (error_code, body); any
#: status not listed gets BAD_STATUS.
REFUSALS: Final[dict[str, tuple[str, bytes]]] = {
    "RUNNING": (ALREADY_RUNNING[0], BODY_ALREADY_RUNNING),
    "STARTING": (STARTING[0], BODY_STARTING),
    "STOPPED": (ALREADY_STOPPED[0], BODY_ALREADY_STOPPED),
    "STOPPING": (STOPPING[0], BODY_STOPPING),
}

_auth_bodies: dict[str, bytes] = {}


def auth_body(reason: str) -> bytes:
    """The 401 body for one of the verifier's fixed reasons."""
    body = _auth_bodies.get(reason)
    if body is None:
        body = _auth_bodies[reason] = error_body(
            AUTH_FAILED, f"Incorrect IAM authentication information: {reason}"
        )
    return body


def throttle_message(policy: str, limit: int, window: str) -> str:
    """The gateway's 429 message, e.g. `...: policy api over ratelimit,limit:10,time:1 second`."""
    return (
        f"The throttling threshold has been reached: policy {policy} over ratelimit,"
        f"limit:{limit},time:1 {window}"
    )


_FLAVORS: Final = ("Si2.large.4", "Si2.xlarge.4", "Sn3.2xlarge.2", "ai1s.large.4", "pi2.2xlarge.4")
_IMAGES: Final = (
    ("X86", "c90fb553-2cdb-4b81-b56a-ef68812c6cf7", "Ubuntu18.04_x86_64_CPU", "ECS"),
    ("ARM", "5b4f64d1-2f39-4a4a-8d1c-0a1d0e8f6a77", "EulerOS2.10_arm_64_NPU", "BMS"),
)
_EPOCH_MS: Final = 1_699_000_000_000


def _facts(instance_id: str) -> tuple[str, str, int, int]:
    """(name, flavor, image index, create_at ms) derived from the id."""
    d = hashlib.blake2b(instance_id.encode(), digest_size=8).digest()
    n = int.from_bytes(d, "big")
    name = f"devserver-{instance_id[:8]}"
    return name, _FLAVORS[n % len(_FLAVORS)], (n >> 8) % len(_IMAGES), _EPOCH_MS + (n >> 16) % 10**10


def created_ms(instance_id: str) -> int:
    """The instance's create_at (ms since the epoch), stable per id."""
    return _facts(instance_id)[3]


def instance_body(instance_id: str, status: str, update_ms: int) -> bytes:
    """The JSON instance object of a 200 answer (stop, start, reboot or show)."""
    name, flavor, image, create_at = _facts(instance_id)
    arch, image_id, image_name, server_type = _IMAGES[image]
    # Every interpolated value is hex, digits or a fixed word: no escaping needed.
    return (
        f'{{"charging_mode":"POST_PAID","cloud_server":{{"type":"{server_type}"}},'
        f'"create_at":{create_at},"flavor":"{flavor}","id":"{instance_id}",'
        f'"image":{{"arch":"{arch}","image_id":"{image_id}","name":"{image_name}",'
        f'"server_type":"{server_type}"}},"name":"{name}","status":"{status}",'
        f'"update_at":{update_ms}}}'
    ).encode()
