"""TLS for the shared server: a self-signed certificate for a lab without a hospital CA, and the client's view of
a server's certificate (which CA file it trusts, and a one-line reason when the check fails).

Made with ``cryptography`` (already installed with MLflow), not by calling ``openssl``: no external program, and the
key is written with owner-only permissions from the first byte.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from clips.disk import require_owner_only
from clips.errors import ClipsError

CA_ENV = "MLFLOW_TRACKING_SERVER_CERT_PATH"  # the CA bundle MLflow's client (requests) verifies the server with
INSECURE_ENV = "MLFLOW_TRACKING_INSECURE_TLS"  # "true": no verification (never on a hospital network)
CERT_FILE, KEY_FILE = "server.crt", "server.key"


def make_self_signed(hosts: list[str], out: Path, days: int = 825) -> tuple[Path, Path]:
    """A certificate for ``hosts`` (DNS names or IP addresses; the first is the subject) and its private key (EC
    P-256, mode 600) in ``out``. 825 days: the longest validity browsers and most TLS clients accept."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not hosts:
        raise ClipsError("give at least one --host (the name or address clients use to reach the server)")
    names = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CLIPS tracking server (self-signed)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            # a server certificate that is its own trust anchor, with what strict verifiers (Python 3.13's
            # VERIFY_X509_STRICT) require of it
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    out.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = out / KEY_FILE, out / CERT_FILE
    if key_path.exists():
        key_path.unlink()  # O_EXCL below: the key is never readable by others, not even for a moment
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def client_context() -> ssl.SSLContext:
    """What this machine trusts when it talks to an https:// server: $MLFLOW_TRACKING_SERVER_CERT_PATH if set
    (the site's CA, or the self-signed certificate itself), else the system's CAs."""
    if os.environ.get(INSECURE_ENV, "").lower() == "true":
        return ssl._create_unverified_context()  # the user's explicit choice, as MLflow's client honours it
    cafile = os.environ.get(CA_ENV) or None
    if cafile and not Path(cafile).is_file():
        raise ClipsError(f"{CA_ENV}={cafile}: no such file (the CA certificate that signed the server's)")
    return ssl.create_default_context(cafile=cafile)


def explain(url: str, exc: ssl.SSLError) -> str:
    """One line for a failed certificate check: which server, what is wrong, what to do."""
    reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
    fix = {"expired": "renew the server's certificate (clips server make-cert, or the hospital CA)",
           "hostname": "reach the server by a name its certificate lists, or make one for this name "
                       "(clips server make-cert --host NAME)"}
    what = next((v for k, v in fix.items() if k in reason.lower()),
                f"set {CA_ENV} to the CA certificate that signed it (tracking_server/README.md, TLS)")
    return f"the tracking server {url} presented a certificate this machine does not accept ({reason}): {what}"


def check_pair(certfile: str, keyfile: str) -> None:
    """Both files given, readable, the key owner-only, and the two belonging together."""
    if bool(certfile) != bool(keyfile):
        raise ClipsError("TLS needs both --certfile and --keyfile")
    if not Path(certfile).is_file():
        raise ClipsError(f"no such file: {certfile} (the TLS certificate)")
    require_owner_only(keyfile, "TLS key")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise ClipsError(f"{certfile} and {keyfile} are not a certificate and its key: {exc}") from None
