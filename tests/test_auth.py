"""The signer against the official SDK (the oracle), and credentials from the environment."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer as SdkSigner
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkops.cloud.auth import (
    ENV_AK,
    ENV_AUTH_TOKEN,
    ENV_SECURITY_TOKEN,
    ENV_SK,
    Credentials,
    Signer,
    auth_headers,
    canonical_uri,
    parse_authorization,
    sdk_date,
    signer_for,
)
from bulkops.options import Options

AK = "HPUAEXAMPLEAK0000001"
SK = "sEcReTkEy/ExAmPlE+0123456789abcdefghijklm"
TOKEN = "gQpjbi1ub3J0aC00ExampleSecurityTokenValue=="
HOST = "modelarts.cn-north-4.myhuaweicloud.com"
DATE = "20260301T120000Z"
PROJECT = "0123456789abcdef0123456789abcdef"
STOP_PATH = f"/v1/{PROJECT}/dev-servers/3fa85f64-5717-4562-b3fc-2c963f66afa6/stop"


def _sdk_authorization(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes = b"",
) -> str:
    """The official SDK's Authorization for one request (a fresh SdkRequest: the SDK mutates it)."""
    request = SdkRequest(
        method=method,
        schema="https",
        host=HOST,
        resource_path=path,
        query_params=list(query),
        header_params=dict(headers),
        body=body or None,
    )
    SdkSigner(BasicCredentials(AK, SK)).sign(request)
    value: str = request.header_params["Authorization"]
    return value


def _ours(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes = b"",
) -> str:
    return Signer(AK, SK).authorization(method, path, query, headers, body)


def _base_headers(**extra: str) -> dict[str, str]:
    return {"Host": HOST, "X-Sdk-Date": DATE, **extra}


JSON_BODY = json.dumps({"type": "STOP", "servers": [{"id": "3fa85f64-5717-4562-b3fc-2c963f66afa6"}]}).encode()


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "body"),
    [
        pytest.param("PUT", STOP_PATH, [], _base_headers(), b"", id="stop"),
        pytest.param("GET", STOP_PATH.removesuffix("/stop"), [], _base_headers(), b"", id="show"),
        pytest.param("PUT", STOP_PATH + "/", [], _base_headers(), b"", id="trailing-slash"),
        pytest.param("get", "/v1/p/dev-servers", [], _base_headers(), b"", id="lower-case-method"),
        pytest.param("GET", "/", [], _base_headers(), b"", id="root"),
        pytest.param(
            "GET",
            "/v1/p/dev-servers",
            [("limit", "10"), ("offset", "0"), ("sort_key", "create_at")],
            _base_headers(),
            b"",
            id="query",
        ),
        pytest.param(
            "GET",
            "/v1/p/dev-servers",
            [("status", "STOPPED"), ("limit", "5"), ("status", "RUNNING"), ("a", "")],
            _base_headers(),
            b"",
            id="query-repeated-keys-unsorted",
        ),
        pytest.param(
            "GET",
            "/v1/p/dev-servers",
            [("name", "实例 一/号?&=+~"), ("q", "a b%20c")],
            _base_headers(),
            b"",
            id="query-non-ascii-and-reserved",
        ),
        pytest.param(
            "GET", "/v1/p/dev servers/%E5%AE%9E%E4%BE%8B/a%2Fb", [], _base_headers(), b"", id="encoded-path"
        ),
        pytest.param(
            "POST",
            "/v1/p/dev-servers/action",
            [],
            _base_headers(**{"Content-Type": "application/json;charset=UTF-8"}),
            JSON_BODY,
            id="json-body",
        ),
        pytest.param(
            "PUT",
            STOP_PATH,
            [],
            _base_headers(**{"X-Security-Token": TOKEN, "X-Project-Id": PROJECT}),
            b"",
            id="security-token-and-project",
        ),
        pytest.param(
            "PUT",
            STOP_PATH,
            [],
            _base_headers(**{"X_Custom_Header": "not signed", "User-Agent": "bulkops/0.1"}),
            b"",
            id="underscore-header-excluded",
        ),
        pytest.param(
            "PUT",
            STOP_PATH,
            [],
            _base_headers(**{"X-Padded": "  spaced value \t", "X-Unicode": "名前"}),
            b"",
            id="header-values-stripped-and-utf8",
        ),
        pytest.param(
            "POST",
            "/v1/p/upload",
            [],
            # The SDK adds X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD itself for a non-JSON content type; bulkops
            # signs it when the caller supplies it (its own calls have no body, so it never needs to).
            _base_headers(
                **{"Content-Type": "application/octet-stream", "X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"}
            ),
            b"\x00\x01binary",
            id="unsigned-payload",
        ),
    ],
)
def test_authorization_equals_the_official_sdk(
    method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str], body: bytes
) -> None:
    """bulkops signs a request byte for byte as the official SDK does, so the gateway accepts it."""
    assert _ours(method, path, query, headers, body) == _sdk_authorization(method, path, query, headers, body)


def test_non_json_content_type_needs_the_unsigned_payload_header_from_the_caller() -> None:
    """Signer does not add X-Sdk-Content-Sha256 by itself: a non-JSON body signed without it differs from
    the SDK (documented limit; bulkops' stop and show calls have no body)."""
    headers = _base_headers(**{"Content-Type": "text/plain"})
    assert _ours("POST", "/x", [], headers, b"data") != _sdk_authorization("POST", "/x", [], headers, b"data")


def test_authorization_has_the_documented_shape() -> None:
    """The header names the algorithm, the access key and the signed headers, and parses back."""
    value = _ours("PUT", STOP_PATH, [], _base_headers(**{"X-Project-Id": PROJECT}))
    parsed = parse_authorization(value)
    assert parsed is not None
    access, names, signature = parsed
    assert access == AK
    assert names == ["host", "x-project-id", "x-sdk-date"]
    assert len(signature) == 64
    assert SK not in value


@pytest.mark.parametrize("security_token", [None, TOKEN])
@pytest.mark.parametrize("project_id", [None, PROJECT])
@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("PUT", STOP_PATH, [], b""),
        ("GET", "/v1/p/dev-servers", [("limit", "2")], b""),
        ("POST", "/a", [], b"{}"),
    ],
)
def test_auth_headers_equal_the_sdk_credentials_flow(
    security_token: str | None,
    project_id: str | None,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    body: bytes,
) -> None:
    """The headers bulkops sends (X-Project-Id, X-Security-Token, X-Sdk-Date, Authorization) are those the
    SDK's BasicCredentials.sign_request produces for the same request."""
    credentials = Credentials(ak=AK, sk=SK, security_token=security_token)
    now = 1_772_366_400.0  # 2026-03-01T12:00:00Z
    ours = auth_headers(
        credentials,
        signer_for(credentials),
        method=method,
        host=HOST,
        path=path,
        query=query,
        project_id=project_id,
        body=body,
        now=now,
    )
    assert ours["X-Sdk-Date"] == sdk_date(now) == DATE
    sdk_credentials = BasicCredentials(AK, SK, project_id)
    if security_token:
        sdk_credentials.with_security_token(security_token)
    request = SdkRequest(
        method=method,
        schema="https",
        host=HOST,
        resource_path=path,
        query_params=list(query),
        header_params={"X-Sdk-Date": DATE},
        body=body or None,
    )
    sdk_credentials.sign_request(request)
    assert ours == request.header_params


def test_token_credentials_send_the_token_and_no_signature() -> None:
    """With BULKOPS_AUTH_TOKEN the request carries X-Auth-Token instead of an AK/SK signature."""
    credentials = Credentials(auth_token="iam-token")
    assert signer_for(credentials) is None
    headers = auth_headers(credentials, None, method="PUT", host=HOST, path=STOP_PATH, project_id=PROJECT)
    assert headers == {"Host": HOST, "X-Project-Id": PROJECT, "X-Auth-Token": "iam-token"}


def test_aksk_credentials_without_a_signer_are_refused() -> None:
    """Forgetting to build the Signer is a programming error, not an unsigned request."""
    with pytest.raises(ValueError, match="Signer"):
        auth_headers(Credentials(ak=AK, sk=SK), None, method="PUT", host=HOST, path="/")


def test_canonical_uri_adds_the_trailing_slash_once() -> None:
    """Paths with and without a trailing slash sign the same canonical URI, as in the SDK."""
    assert canonical_uri("/v1/a/b") == canonical_uri("/v1/a/b/") == "/v1/a/b/"


# --- property test against the SDK ------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=12)
_segment = st.text(st.characters(codec="utf-8", exclude_characters="/"), max_size=10)
_header_name = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_-]{0,15}\Z")
_header_value = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=20)


@st.composite
def _requests(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, str]], dict[str, str], bytes]:
    method = draw(st.sampled_from(["GET", "PUT", "POST", "DELETE", "patch"]))
    path = "/" + "/".join(draw(st.lists(_segment, max_size=5))) + draw(st.sampled_from(["", "/"]))
    query = draw(st.lists(st.tuples(_text, _text), max_size=5))
    names = draw(st.lists(_header_name, max_size=4, unique_by=str.lower))
    headers = _base_headers()
    for name in names:
        if name.lower() not in {
            "host",
            "x-sdk-date",
            "authorization",
            "content-type",
            "x-sdk-content-sha256",
        }:
            headers[name] = draw(_header_value)
    body = draw(st.sampled_from([b"", JSON_BODY, b"{}"]))
    if body:
        headers["Content-Type"] = "application/json"
    return method, path, query, headers, body


@settings(max_examples=300, deadline=None)
@given(_requests())
def test_any_request_signs_like_the_sdk(
    request: tuple[str, str, list[tuple[str, str]], dict[str, str], bytes],
) -> None:
    """For random paths, queries, header names and values, bulkops' signature equals the SDK's."""
    method, path, query, headers, body = request
    assert _ours(method, path, query, headers, body) == _sdk_authorization(method, path, query, headers, body)


# --- credentials -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({}, None),
        ({ENV_AK: "", ENV_SK: ""}, None),
        ({ENV_AK: AK, ENV_SK: SK}, "aksk"),
        ({ENV_AK: AK, ENV_SK: SK, ENV_SECURITY_TOKEN: TOKEN}, "aksk+token"),
        ({ENV_AK: AK, ENV_SK: SK, ENV_SECURITY_TOKEN: ""}, "aksk"),
        ({ENV_AUTH_TOKEN: "iam-token"}, "token"),
        ({ENV_AUTH_TOKEN: "iam-token", ENV_AK: ""}, "token"),
        # A lone security token is no credential at all: from_env reports none (the CLI then says so).
        ({ENV_SECURITY_TOKEN: TOKEN}, None),
    ],
)
def test_credentials_from_env(env: dict[str, str], kind: str | None) -> None:
    """Credentials are read from the SDK's environment names; empty values count as unset."""
    credentials = Credentials.from_env(env)
    assert (credentials.kind if credentials is not None else None) == kind


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({ENV_AK: AK}, "both"),
        ({ENV_SK: SK}, "both"),
        ({ENV_SK: SK, ENV_SECURITY_TOKEN: TOKEN}, "both"),
        ({ENV_AK: AK, ENV_SK: SK, ENV_AUTH_TOKEN: "iam-token"}, "not both"),
        ({ENV_AUTH_TOKEN: "iam-token", ENV_SECURITY_TOKEN: TOKEN}, "goes with"),
    ],
)
def test_credentials_from_env_rejects_half_or_mixed_credentials(env: dict[str, str], message: str) -> None:
    """Half an AK/SK pair, or two kinds at once, is an error naming the variables, never their values."""
    with pytest.raises(ValueError, match=message) as info:
        Credentials.from_env(env)
    assert not any(secret in str(info.value) for secret in (AK, SK, TOKEN, "iam-token"))


def test_credentials_from_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit mapping, the process environment is read."""
    monkeypatch.setenv(ENV_AK, AK)
    monkeypatch.setenv(ENV_SK, SK)
    monkeypatch.delenv(ENV_SECURITY_TOKEN, raising=False)
    monkeypatch.delenv(ENV_AUTH_TOKEN, raising=False)
    credentials = Credentials.from_env()
    assert credentials is not None
    assert (credentials.ak, credentials.sk) == (AK, SK)


@pytest.mark.parametrize(
    "credentials",
    [
        Credentials(ak=AK, sk=SK),
        Credentials(ak=AK, sk=SK, security_token=TOKEN),
        Credentials(auth_token="iam-token-secret"),
    ],
)
def test_credentials_never_show_a_secret(credentials: Credentials) -> None:
    """repr, str and the repr of the Options holding them name the kind of credential, never a secret."""
    options = Options(endpoint="http://127.0.0.1:8080", credentials=credentials)
    for text in (repr(credentials), str(credentials), f"{credentials}", f"{credentials!r}", repr(options)):
        assert credentials.kind in text
        for secret in credentials.secrets():
            assert secret not in text
