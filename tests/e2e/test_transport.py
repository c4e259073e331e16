"""HTTPS with --tls-cert/--tls-key, and a TLS handshake on the plain port refused at once."""

from __future__ import annotations

import datetime
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.rig import LAZYREG_BIN, Lazyreg, Upstream, free_port, run

pytestmark = pytest.mark.e2e


def test_tls_handshake_on_plain_port_is_refused_at_once(lazyreg: Lazyreg) -> None:
    port = int(lazyreg.url.rsplit(":", 1)[1])
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    assert time.monotonic() - started < 1.0


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_serving_with_skopeo(lazyreg: Lazyreg, upstream: Upstream, tmp_path: Path) -> None:
    lazyreg.setup_mirror(upstream, "mirror", "fixtures/small")
    lazyreg.stop()
    cert, key = _self_signed(tmp_path)
    port = free_port()
    log = (tmp_path / "https.log").open("w")
    proc = subprocess.Popen([str(LAZYREG_BIN), "serve", "--port", str(port), "--data-dir",
                             str(lazyreg.data_dir), "--tls-cert", str(cert), "--tls-key",
                             str(key)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        out = run(["skopeo", "inspect", "--tls-verify=false",
                   f"docker://127.0.0.1:{port}/mirror:v1"])
        assert upstream.tag("fixtures/small", "v1")["digest"] in out.stdout
        assert "lazyreg serving https://" in (tmp_path / "https.log").read_text()
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
