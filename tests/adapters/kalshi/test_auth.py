"""Kalshi request signing and the server-side check the local exchange uses."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from adapters.kalshi.auth import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AuthFailure,
    AuthRejected,
    KeyLoadError,
    RequestSigner,
    generate_keypair,
    load_private_key,
    private_key_from_pem,
    public_key_from_pem,
    signing_path,
    verify_request,
)

NOW_MS = 1_781_159_489_957
KEY_ID = "a952bcbe-ec3b-4b5b-b8f9-11dae589608c"
ORDERS = "/trade-api/v2/portfolio/orders"


@pytest.fixture(scope="module")
def keypair():
    return generate_keypair()


@pytest.fixture(scope="module")
def private_key(keypair):
    return private_key_from_pem(keypair[0])


@pytest.fixture(scope="module")
def public_keys(keypair):
    return {KEY_ID: public_key_from_pem(keypair[1])}


@pytest.fixture(scope="module")
def signer(private_key):
    return RequestSigner(KEY_ID, private_key)


def rejection(headers, public_keys, method="GET", path=ORDERS, now_ms=NOW_MS) -> AuthRejected:
    with pytest.raises(AuthRejected) as caught:
        verify_request(headers, method, path, public_keys, now_ms)
    return caught.value


def forged(private_key, message: bytes, pad) -> str:
    return base64.b64encode(private_key.sign(message, pad, hashes.SHA256())).decode()


# ---------------------------------------------------------------------------------------------
# Signing and verifying
# ---------------------------------------------------------------------------------------------
def test_sign_then_verify(signer, public_keys):
    headers = signer.headers("POST", "/trade-api/v2/portfolio/events/orders", NOW_MS)
    assert headers[KEY_HEADER] == KEY_ID
    assert headers[TIMESTAMP_HEADER] == str(NOW_MS)
    assert verify_request(headers, "POST", "/trade-api/v2/portfolio/events/orders", public_keys, NOW_MS) == KEY_ID


def test_signatures_are_randomised_and_standard_base64(signer, public_keys):
    first = signer.headers("GET", ORDERS, NOW_MS)[SIGNATURE_HEADER]
    second = signer.headers("GET", ORDERS, NOW_MS)[SIGNATURE_HEADER]
    assert first != second  # PSS salt
    assert len(base64.b64decode(first, validate=True)) == 256  # 2048-bit key
    for signature in (first, second):
        headers = {KEY_HEADER: KEY_ID, TIMESTAMP_HEADER: str(NOW_MS), SIGNATURE_HEADER: signature}
        assert verify_request(headers, "GET", ORDERS, public_keys, NOW_MS) == KEY_ID


def test_the_query_string_is_not_signed(signer, public_keys):
    headers = signer.headers("GET", ORDERS + "?status=resting&limit=5", NOW_MS)
    assert verify_request(headers, "GET", ORDERS, public_keys, NOW_MS) == KEY_ID
    assert verify_request(headers, "GET", ORDERS + "?cursor=abc", public_keys, NOW_MS) == KEY_ID


def test_a_client_that_signed_the_query_is_rejected(private_key, public_keys):
    message = f"{NOW_MS}GET{ORDERS}?limit=5".encode()
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    headers = {KEY_HEADER: KEY_ID, TIMESTAMP_HEADER: str(NOW_MS), SIGNATURE_HEADER: forged(private_key, message, pss)}
    error = rejection(headers, public_keys, path=ORDERS + "?limit=5")
    assert error.failure is AuthFailure.BAD_SIGNATURE


def test_full_urls_sign_their_path():
    assert signing_path("https://external-api.demo.kalshi.co/trade-api/v2/markets?limit=1") == "/trade-api/v2/markets"
    assert signing_path("/trade-api/ws/v2") == "/trade-api/ws/v2"


def test_a_path_without_the_trade_api_prefix_is_refused(signer):
    with pytest.raises(ValueError, match="must start with '/trade-api'"):
        signer.headers("GET", "/portfolio/orders", NOW_MS)


def test_websocket_handshake_signs_get_ws_path(signer, public_keys):
    headers = signer.websocket_headers(NOW_MS)
    assert verify_request(headers, "GET", "/trade-api/ws/v2", public_keys, NOW_MS) == KEY_ID
    assert rejection(headers, public_keys, path="/trade-api/v2/markets").failure is AuthFailure.BAD_SIGNATURE


def test_the_method_is_signed(signer, public_keys):
    headers = signer.headers("DELETE", ORDERS + "/abc", NOW_MS)
    assert rejection(headers, public_keys, method="GET", path=ORDERS + "/abc").failure is AuthFailure.BAD_SIGNATURE
    assert verify_request(headers, "delete", ORDERS + "/abc", public_keys, NOW_MS) == KEY_ID


def test_header_names_are_case_insensitive(signer, public_keys):
    headers = {name.lower(): value for name, value in signer.headers("GET", ORDERS, NOW_MS).items()}
    assert verify_request(headers, "GET", ORDERS, public_keys, NOW_MS) == KEY_ID


def test_signer_defaults_to_the_current_time(signer):
    import time

    stamp = int(signer.headers("GET", ORDERS)[TIMESTAMP_HEADER])
    assert abs(stamp - time.time() * 1000) < 60_000


# ---------------------------------------------------------------------------------------------
# Rejections, with Kalshi's codes
# ---------------------------------------------------------------------------------------------
def test_a_seconds_timestamp_is_expired(private_key, public_keys):
    seconds = str(NOW_MS // 1000)
    message = f"{seconds}GET{ORDERS}".encode()
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    headers = {KEY_HEADER: KEY_ID, TIMESTAMP_HEADER: seconds, SIGNATURE_HEADER: forged(private_key, message, pss)}
    error = rejection(headers, public_keys)
    assert error.failure is AuthFailure.TIMESTAMP_EXPIRED
    assert error.code == "header_timestamp_expired"
    assert "milliseconds" in error.message


@pytest.mark.parametrize(("offset", "accepted"), [(4_999, True), (-5_000, True), (5_001, False), (-6_000, False)])
def test_clock_skew_limit(signer, public_keys, offset, accepted):
    headers = signer.headers("GET", ORDERS, NOW_MS + offset)
    if accepted:
        assert verify_request(headers, "GET", ORDERS, public_keys, NOW_MS) == KEY_ID
    else:
        assert rejection(headers, public_keys).failure is AuthFailure.TIMESTAMP_EXPIRED


def test_a_non_numeric_timestamp_is_expired(signer, public_keys):
    headers = signer.headers("GET", ORDERS, NOW_MS) | {TIMESTAMP_HEADER: "2026-06-11T06:31:29Z"}
    assert rejection(headers, public_keys).failure is AuthFailure.TIMESTAMP_EXPIRED


def test_a_tampered_signature_is_rejected(signer, public_keys):
    headers = signer.headers("GET", ORDERS, NOW_MS)
    raw = bytearray(base64.b64decode(headers[SIGNATURE_HEADER]))
    raw[10] ^= 0x01
    headers[SIGNATURE_HEADER] = base64.b64encode(bytes(raw)).decode()
    error = rejection(headers, public_keys)
    assert (error.code, error.details) == ("authentication_error", "INCORRECT_API_KEY_SIGNATURE")


def test_a_signature_that_is_not_base64_is_rejected(signer, public_keys):
    headers = signer.headers("GET", ORDERS, NOW_MS) | {SIGNATURE_HEADER: "not base64!"}
    assert rejection(headers, public_keys).failure is AuthFailure.BAD_SIGNATURE


def test_a_pkcs1v15_signature_is_rejected(private_key, public_keys):
    message = f"{NOW_MS}GET{ORDERS}".encode()
    headers = {
        KEY_HEADER: KEY_ID,
        TIMESTAMP_HEADER: str(NOW_MS),
        SIGNATURE_HEADER: forged(private_key, message, padding.PKCS1v15()),
    }
    assert rejection(headers, public_keys).failure is AuthFailure.BAD_SIGNATURE


def test_a_pss_signature_with_another_salt_length_is_rejected(private_key, public_keys):
    message = f"{NOW_MS}GET{ORDERS}".encode()
    pss_max = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
    signature = forged(private_key, message, pss_max)
    headers = {KEY_HEADER: KEY_ID, TIMESTAMP_HEADER: str(NOW_MS), SIGNATURE_HEADER: signature}
    assert rejection(headers, public_keys).failure is AuthFailure.BAD_SIGNATURE


def test_an_unknown_key_is_not_found(signer, public_keys):
    headers = signer.headers("GET", ORDERS, NOW_MS) | {KEY_HEADER: "someone-else"}
    error = rejection(headers, public_keys)
    assert (error.code, error.details) == ("authentication_error", "NOT_FOUND")


def test_a_key_pair_mismatch_is_a_bad_signature(public_keys):
    other = RequestSigner(KEY_ID, private_key_from_pem(generate_keypair()[0]))
    assert rejection(other.headers("GET", ORDERS, NOW_MS), public_keys).failure is AuthFailure.BAD_SIGNATURE


@pytest.mark.parametrize("dropped", [KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER])
def test_a_missing_header_is_reported(signer, public_keys, dropped):
    headers = signer.headers("GET", ORDERS, NOW_MS)
    del headers[dropped]
    error = rejection(headers, public_keys)
    assert error.code == "signature_is_missing_from_headers"
    assert dropped in error.message


def test_rejection_body_matches_kalshi():
    error = AuthRejected(AuthFailure.BAD_SIGNATURE, "signature does not match the request")
    assert error.http_status == 401
    assert error.body() == {
        "error": {
            "code": "authentication_error",
            "message": "signature does not match the request",
            "details": "INCORRECT_API_KEY_SIGNATURE",
        }
    }
    missing = AuthRejected(AuthFailure.SIGNATURE_MISSING, "missing header(s): KALSHI-ACCESS-SIGNATURE")
    assert missing.body() == {
        "error": {"code": "signature_is_missing_from_headers", "message": "missing header(s): KALSHI-ACCESS-SIGNATURE"}
    }


# ---------------------------------------------------------------------------------------------
# Loading keys
# ---------------------------------------------------------------------------------------------
def test_load_private_key_from_a_pem_file(tmp_path, keypair, public_keys):
    path = tmp_path / "kalshi.pem"
    path.write_bytes(keypair[0])
    signer = RequestSigner(KEY_ID, load_private_key(path))
    assert verify_request(signer.headers("GET", ORDERS, NOW_MS), "GET", ORDERS, public_keys, NOW_MS) == KEY_ID


def test_load_a_traditional_pkcs1_rsa_key(tmp_path, private_key):
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    path = tmp_path / "rsa.pem"
    path.write_bytes(pem)
    assert load_private_key(path).key_size == 2048


def test_missing_key_file(tmp_path):
    with pytest.raises(KeyLoadError, match="private key file not found"):
        load_private_key(tmp_path / "nope.pem")


def test_a_directory_is_not_a_key(tmp_path):
    with pytest.raises(KeyLoadError, match="is a directory"):
        load_private_key(tmp_path)


def test_a_file_that_is_not_pem(tmp_path):
    path = tmp_path / "key.txt"
    path.write_text("hello")
    with pytest.raises(KeyLoadError, match="is not PEM"):
        load_private_key(path)


def test_a_public_key_is_not_a_private_key(tmp_path, keypair):
    path = tmp_path / "public.pem"
    path.write_bytes(keypair[1])
    with pytest.raises(KeyLoadError, match="not a readable PEM private key"):
        load_private_key(path)


def test_an_ec_key_is_refused(tmp_path):
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / "ec.pem"
    path.write_bytes(pem)
    with pytest.raises(KeyLoadError, match="needs an RSA key"):
        load_private_key(path)


def test_an_encrypted_key_needs_its_password(tmp_path, private_key):
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    path = tmp_path / "encrypted.pem"
    path.write_bytes(pem)
    with pytest.raises(KeyLoadError, match="encrypted"):
        load_private_key(path)
    assert load_private_key(path, password=b"pw").key_size == 2048
