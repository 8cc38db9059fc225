"""Kalshi request signing (client side) and verification (the local exchange's side).

Every REST request and the WebSocket handshake carry three headers:

* ``KALSHI-ACCESS-KEY``       -- the key id,
* ``KALSHI-ACCESS-TIMESTAMP`` -- Unix time in **milliseconds**, as a string,
* ``KALSHI-ACCESS-SIGNATURE`` -- standard base64 of an RSA-PSS signature (SHA-256, MGF1(SHA-256),
  salt length 32 = the digest length) over ``timestamp + METHOD + path``, where ``path`` starts
  at ``/trade-api`` and has no ``?query``. The handshake signs ``GET /trade-api/ws/v2``.

PSS signatures are randomised, so a verifier needs the public key; it cannot recompute them.
:func:`verify_request` raises :class:`AuthRejected` carrying Kalshi's own rejection code, so the
local exchange answers a broken client exactly as Kalshi would.
"""

from __future__ import annotations

import base64
import binascii
import enum
import os
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KEY_HEADER = "KALSHI-ACCESS-KEY"
TIMESTAMP_HEADER = "KALSHI-ACCESS-TIMESTAMP"
SIGNATURE_HEADER = "KALSHI-ACCESS-SIGNATURE"
WS_PATH = "/trade-api/ws/v2"
PATH_PREFIX = "/trade-api"
MAX_SKEW_MS = 5_000

_SALT_LENGTH = 32  # = SHA-256 digest length, what Kalshi's own client code uses


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=_SALT_LENGTH)


class KeyLoadError(ValueError):
    """The private key file is missing or is not a PEM RSA private key."""


def load_private_key(path: str | os.PathLike[str], password: bytes | None = None) -> rsa.RSAPrivateKey:
    """An RSA private key from a PEM file (PKCS#1 or PKCS#8)."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise KeyLoadError(f"private key file not found: {file}") from None
    except IsADirectoryError:
        raise KeyLoadError(f"private key path is a directory, not a file: {file}") from None
    return private_key_from_pem(data, password, source=str(file))


def private_key_from_pem(data: bytes, password: bytes | None = None, *, source: str = "PEM data") -> rsa.RSAPrivateKey:
    if b"-----BEGIN" not in data:
        raise KeyLoadError(f"{source} is not PEM (no '-----BEGIN' line)")
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError as exc:  # encrypted without a password, or a password for a plain key
        raise KeyLoadError(f"{source}: {exc}") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyLoadError(f"{source} is not a readable PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyLoadError(f"{source} holds a {type(key).__name__}; Kalshi needs an RSA key")
    return key


def public_key_from_pem(data: bytes, *, source: str = "PEM data") -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyLoadError(f"{source} is not a readable PEM public key ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyLoadError(f"{source} holds a {type(key).__name__}; Kalshi needs an RSA key")
    return key


def generate_keypair(bits: int = 2048) -> tuple[bytes, bytes]:
    """A fresh RSA keypair as (private PEM, public PEM), for tests and demos."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def signing_path(path_or_url: str) -> str:
    """The part of a request target Kalshi signs: the path from ``/trade-api``, no query.

    Accepts a bare path (``/trade-api/v2/portfolio/orders?limit=5``) or a full URL.
    """
    path = urlsplit(path_or_url).path if "://" in path_or_url else path_or_url.split("?", 1)[0]
    if not path.startswith(PATH_PREFIX):
        raise ValueError(
            f"signed path must start with {PATH_PREFIX!r} (the /trade-api/v2 prefix is signed too), got {path!r}"
        )
    return path


def _message(timestamp: str, method: str, path: str) -> bytes:
    return f"{timestamp}{method.upper()}{path}".encode()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class RequestSigner:
    """Signs requests with one API key. Sign afresh for every request and every reconnect."""

    def __init__(self, key_id: str, private_key: rsa.RSAPrivateKey) -> None:
        if not key_id:
            raise ValueError("key_id must not be empty")
        self.key_id = key_id
        self._key = private_key

    def headers(self, method: str, path: str, now_ms: int | None = None) -> dict[str, str]:
        """The three auth headers for ``method path`` (the query string, if any, is not signed)."""
        timestamp = str(_now_ms() if now_ms is None else now_ms)
        signature = self._key.sign(_message(timestamp, method, signing_path(path)), _pss(), hashes.SHA256())
        return {
            KEY_HEADER: self.key_id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: base64.b64encode(signature).decode("ascii"),
        }

    def websocket_headers(self, now_ms: int | None = None) -> dict[str, str]:
        """Headers for the WebSocket handshake (``GET /trade-api/ws/v2``)."""
        return self.headers("GET", WS_PATH, now_ms)


# ---------------------------------------------------------------------------------------------
# Server side
# ---------------------------------------------------------------------------------------------
class AuthFailure(enum.Enum):
    """Kalshi's rejections, as (code, details). All are HTTP 401."""

    SIGNATURE_MISSING = ("signature_is_missing_from_headers", None)
    TIMESTAMP_EXPIRED = ("header_timestamp_expired", None)
    UNKNOWN_KEY = ("authentication_error", "NOT_FOUND")
    BAD_SIGNATURE = ("authentication_error", "INCORRECT_API_KEY_SIGNATURE")

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def details(self) -> str | None:
        return self.value[1]


class AuthRejected(Exception):
    """A request the exchange refuses; ``body()`` is what Kalshi answers with HTTP 401."""

    http_status = 401

    def __init__(self, failure: AuthFailure, message: str) -> None:
        self.failure = failure
        self.message = message
        super().__init__(f"{failure.code}: {message}")

    @property
    def code(self) -> str:
        return self.failure.code

    @property
    def details(self) -> str | None:
        return self.failure.details

    def body(self) -> dict[str, dict[str, str]]:
        error = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


def verify_request(
    headers: Mapping[str, str],
    method: str,
    path: str,
    public_keys: Mapping[str, rsa.RSAPublicKey],
    now_ms: int,
    max_skew_ms: int = MAX_SKEW_MS,
) -> str:
    """Check a request's auth headers as Kalshi does; returns the key id or raises :class:`AuthRejected`.

    ``headers`` may use any case (HTTP header names are case-insensitive); ``path`` may carry
    a query string, which is not part of what was signed; ``public_keys`` maps key id -> key.
    """
    found = {name.lower(): value for name, value in headers.items()}
    key_id = found.get(KEY_HEADER.lower())
    timestamp = found.get(TIMESTAMP_HEADER.lower())
    signature_b64 = found.get(SIGNATURE_HEADER.lower())
    missing = [
        name
        for name, value in ((KEY_HEADER, key_id), (TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signature_b64))
        if not value
    ]
    if missing:
        raise AuthRejected(AuthFailure.SIGNATURE_MISSING, f"missing header(s): {', '.join(missing)}")
    assert key_id is not None and timestamp is not None and signature_b64 is not None

    if not (timestamp.isascii() and timestamp.isdigit()):
        raise AuthRejected(AuthFailure.TIMESTAMP_EXPIRED, f"timestamp {timestamp!r} is not Unix milliseconds")
    skew = int(timestamp) - now_ms
    if abs(skew) > max_skew_ms:
        hint = " (a seconds timestamp? Kalshi wants milliseconds)" if len(timestamp) <= 10 else ""
        raise AuthRejected(
            AuthFailure.TIMESTAMP_EXPIRED, f"timestamp {timestamp} is {skew} ms from server time{hint}"
        )

    public_key = public_keys.get(key_id)
    if public_key is None:
        raise AuthRejected(AuthFailure.UNKNOWN_KEY, f"unknown API key {key_id!r}")

    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise AuthRejected(AuthFailure.BAD_SIGNATURE, "signature is not standard base64") from None
    try:
        public_key.verify(signature, _message(timestamp, method, path.split("?", 1)[0]), _pss(), hashes.SHA256())
    except InvalidSignature:
        raise AuthRejected(AuthFailure.BAD_SIGNATURE, "signature does not match the request") from None
    return key_id
