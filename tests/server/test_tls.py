"""HttpTransport over TLS against a real ping_server process (uvicorn with a certificate from a
throwaway CA made here): its own httpx client (``verify=``), a caller's httpx client and a
:class:`ConnectionPool` each register a device and round-trip an envelope when they trust the CA,
and each refuses the connection (TransportError "network", nothing sent) when they do not: the
default contexts verify certificates."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ping_core.clock import Hlc
from ping_core.device import LocalDevice
from ping_core.errors import TransportError
from ping_core.identity import Identity
from ping_core.ids import ConversationId
from ping_core.message import MessageEnvelope, MessageKind
from ping_core.sync import SyncCursor
from ping_core.transport.http import ConnectionPool, HttpTransport
from ping_server.process import REPO_ROOT

# The server as `python -m ping_server` builds it, on a socket bound first (its port printed),
# served by uvicorn with the certificate. Rate limits off: the tests register several devices.
_SERVE = """
import socket, sys, uvicorn
from ping_server.api import ApiConfig
from ping_server.service import build_app
cert, key, db, dist = sys.argv[1:5]
app = build_app(db=db, dist=dist, config=ApiConfig(rate_limit=0, address_rate_limit=0))
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.bind(("127.0.0.1", 0))
sock.listen(128)
print("port", sock.getsockname()[1], flush=True)
config = uvicorn.Config(app, ssl_certfile=cert, ssl_keyfile=key, log_level="warning", access_log=False)
uvicorn.Server(config).run(sockets=[sock])
"""


@dataclass
class TlsServer:
    url: str
    ca_file: Path

    def trusting(self) -> ssl.SSLContext:
        """A client context that trusts the test CA (and verifies as the defaults do)."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def _write_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost and 127.0.0.1 it signed; (CA, cert, key) files."""
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ping test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        )  # fmt: skip
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_file, cert_file, key_file


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    folder = tmp_path_factory.mktemp("ping-tls")
    ca_file, cert_file, key_file = _write_certificates(folder)
    log = open(folder / "server.log", "wb")  # noqa: SIM115 (open for the process's lifetime)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    args = [str(cert_file), str(key_file), str(folder / "ping.sqlite"), str(REPO_ROOT / "no-web-client")]
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, *args], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, env=env
    )
    ports: list[int] = []

    def read() -> None:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if len(line) == 2 and line[0] == b"port":
            ports.append(int(line[1]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(30)
    try:
        if not ports:
            raise RuntimeError(
                f"the TLS server did not start: {(folder / 'server.log').read_text(errors='replace')[-2000:]}"
            )
        yield TlsServer(f"https://127.0.0.1:{ports[0]}", ca_file)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
        log.close()


PATHS = ["own-client", "callers-client", "pool"]


async def _round_trip(tls_server: TlsServer, path: str, trusted: bool) -> None:
    """Register a new device over ``path`` and send and read back an envelope."""
    ident = Identity.generate()
    dev = LocalDevice.generate(ident.user_id, "tls", 1)
    ctx = tls_server.trusting() if trusted else None
    client: httpx.AsyncClient | None = None
    pool: ConnectionPool | None = None
    if path == "own-client":
        t = HttpTransport.for_device(tls_server.url, dev, verify=ctx)
    elif path == "callers-client":
        client = httpx.AsyncClient(verify=ctx) if ctx is not None else httpx.AsyncClient()
        t = HttpTransport.for_device(tls_server.url, dev, client=client)
    else:
        pool = ConnectionPool(ssl_context=ctx)
        t = HttpTransport.for_device(tls_server.url, dev, pool=pool)
    try:
        await t.register_device(dev.info(1), ident.device_binding(dev.device_id))
        conv = ConversationId.new()
        env = MessageEnvelope(conv, 0, MessageKind.COMMIT, dev.device_id, 0, Hlc(1, 0), b"over TLS")
        seq = await t.send(env)
        page = await t.fetch_since(conv, SyncCursor(0), 10)
        assert [(e.seq, e.sender_device, e.payload) for e in page] == [(seq, dev.device_id, b"over TLS")]
    finally:
        await t.aclose()
        if client is not None:
            await client.aclose()
        if pool is not None:
            await pool.aclose()


@pytest.mark.parametrize("path", PATHS)
async def test_trusted_certificate_works(tls_server: TlsServer, path: str) -> None:
    await _round_trip(tls_server, path, trusted=True)


@pytest.mark.parametrize("path", PATHS)
async def test_untrusted_certificate_is_refused(tls_server: TlsServer, path: str) -> None:
    """With the default trust store the test CA is unknown: no connection, "network" (ambiguous by
    type, though here nothing was sent)."""
    with pytest.raises(TransportError) as err:
        await _round_trip(tls_server, path, trusted=False)
    assert (err.value.status, err.value.code) == (None, "network")
    # ... because the certificate did not verify (the HTTP library's error, kept as the context).
    reasons = []
    cause: BaseException | None = err.value
    while cause is not None:
        reasons.append(str(cause))
        cause = cause.__context__
    assert any("CERTIFICATE_VERIFY_FAILED" in r or "SSLCertVerificationError" in r for r in reasons), reasons


@pytest.mark.parametrize("path", ["own-client", "pool"])
async def test_plain_http_to_a_tls_port_gets_no_answer(tls_server: TlsServer, path: str) -> None:
    dev = LocalDevice.generate(Identity.generate().user_id, "tls", 1)
    pool = ConnectionPool() if path == "pool" else None
    try:
        async with HttpTransport.for_device(
            tls_server.url.replace("https://", "http://"), dev, timeout=5, pool=pool
        ) as t:
            with pytest.raises(TransportError) as err:
                await t.fetch_welcomes()
    finally:
        if pool is not None:
            await pool.aclose()
    assert (err.value.status, err.value.code) == (None, "network")
