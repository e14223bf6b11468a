"""The simulator's test CA, its server certificate, and the JWTs it issues and checks.

Tokens are RS256 JWTs signed with a key of the simulator's; ARM accepts only tokens whose
signature, audience and expiry check out. Azurite's ``--oauth basic`` checks no signature, only
``iss``, ``aud``, ``nbf`` and ``exp``, so the same tokens serve it.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Pki:
    """A CA (written to ``dir/ca.pem``) and a server certificate for `hosts` signed by it."""

    def __init__(self, directory: Path, hosts: list[str]):
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        self.ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "batchai simulator test CA")])
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        names: list[x509.GeneralName] = []
        for host in dict.fromkeys(hosts):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        server_cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_name)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=29))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        self.ca_path = directory / "ca.pem"
        self.cert_path = directory / "server.pem"
        self.key_path = directory / "server-key.pem"
        self.ca_path.write_bytes(self.ca_cert.public_bytes(pem))
        self.cert_path.write_bytes(server_cert.public_bytes(pem) + self.ca_cert.public_bytes(pem))
        self.key_path.write_bytes(
            server_key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
        )
        self.key_path.chmod(0o600)
        # The key the simulator signs tokens with.
        self.token_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = _b64url(hashes.Hash(hashes.SHA256()).finalize()[:8]) + "sim"

    def sign(self, claims: dict[str, Any]) -> str:
        return sign_jwt(self.token_key, claims, self.kid)

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this simulator signed and that has not expired, else None."""
        claims = verify_jwt(token, self.token_key.public_key())
        if claims is None:
            return None
        now = time.time()
        if claims.get("exp", 0) < now or claims.get("nbf", 0) > now + 300:
            return None
        return claims


def sign_jwt(key: Any, claims: dict[str, Any], kid: str | None = None, x5t: str | None = None) -> str:
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    if x5t:
        header["x5t"] = x5t
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def decode_jwt(token: str) -> tuple[dict, dict] | None:
    """(header, claims) of a well-formed JWT, unverified."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        return json.loads(_b64url_decode(parts[0])), json.loads(_b64url_decode(parts[1]))
    except ValueError:
        return None


def verify_jwt(token: str, public_key: Any) -> dict[str, Any] | None:
    decoded = decode_jwt(token)
    if decoded is None or decoded[0].get("alg") != "RS256":
        return None
    head, body, sig = token.split(".")
    try:
        public_key.verify(_b64url_decode(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return None
    return decoded[1]


def load_certificate_key(path: Path) -> Any:
    """The public key of a PEM certificate (for client-certificate assertions)."""
    return x509.load_pem_x509_certificate(path.read_bytes()).public_key()
