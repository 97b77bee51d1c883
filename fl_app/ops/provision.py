"""Deployment credentials with the `cryptography` package: a CA, the SuperLink's TLS
certificate, and ECDSA key pairs that authenticate SuperNodes (OpenSSH format, as
Flower's `--auth-supernode-private-key` and `flwr supernode register` expect).

Private files are created with mode 0600 before anything is written to them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fl_app.crypto.secret_files import write_private
from fl_app.ops.flower import FlowerCLI

CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "superlink.crt", "superlink.key"


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fl_app federation"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls(out_dir: Path, hosts: list[str], *, days: int = 365, force: bool = False) -> TlsFiles:
    """A CA and a SuperLink certificate valid for `hosts` (DNS names or IP addresses)."""
    if not hosts:
        raise ValueError("hosts=[] is invalid: allowed one or more DNS names or IP addresses")
    files = TlsFiles(out_dir / CA_CERT, out_dir / SERVER_CERT, out_dir / SERVER_KEY)
    existing = [str(p) for p in (files.ca_cert, files.server_cert, files.server_key) if p.exists()]
    if existing and not force:
        raise FileExistsError(f"refusing to overwrite {existing}; pass --force to replace them")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("fl_app root CA"))
        .issuer_name(_name("fl_app root CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
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
        .sign(ca_key, hashes.SHA384())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA384())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_private(out_dir / CA_KEY, _pem_key(ca_key))
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    write_private(files.server_key, _pem_key(server_key))
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    return files


def make_node_key(out_dir: Path, name: str, *, force: bool = False) -> tuple[Path, Path]:
    """An ECDSA (NIST P-384) key pair for SuperNode authentication: `name` and `name.pub`."""
    private_path, public_path = out_dir / name, out_dir / f"{name}.pub"
    if (private_path.exists() or public_path.exists()) and not force:
        raise FileExistsError(f"refusing to overwrite {private_path}; pass --force to replace it")
    key = ec.generate_private_key(ec.SECP384R1())
    write_private(
        private_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + f" {name}\n".encode()
    )
    return private_path, public_path


def register_fresh_node_keys(cli: FlowerCLI, key_dir: Path, count: int) -> list[Path]:
    """New key pairs for `count` nodes, registered after every node the SuperLink still
    knows (from an earlier provisioning) is unregistered: a rotated or discarded
    node key never stays authorised. Returns the private keys."""
    listed = cli.flwr("supernode", "ls", *cli.target(), "--format", "json", timeout=120)
    try:
        nodes = json.loads(listed.stdout[listed.stdout.index("{") :])["nodes"]
    except (ValueError, KeyError) as err:
        raise RuntimeError(f"listing registered SuperNodes failed: {listed.stdout[-500:]}") from err
    for node in (n for n in nodes if n.get("status") != "unregistered"):
        gone = cli.flwr("supernode", "unregister", str(node["node-id"]), *cli.target(), timeout=120)
        if gone.returncode != 0:
            raise RuntimeError(f"unregistering node {node['node-id']} failed: {gone.stdout[-500:]}")
    keys = []
    for index in range(count):
        private, public = make_node_key(key_dir, f"node{index}", force=True)
        registered = cli.flwr(
            "supernode", "register", str(public), *cli.target(), "--name", f"node{index}",
            timeout=120,
        )  # fmt: skip
        if registered.returncode != 0:
            raise RuntimeError(f"registering node{index} failed: {registered.stdout[-500:]}")
        keys.append(private)
    return keys


def write_connection(name: str, address: str, ca_cert: Path, home: Path) -> Path:
    """Add (or replace) one SuperLink connection in FLWR_HOME/config.toml."""
    path = home / "config.toml"
    config = tomllib.loads(path.read_text()) if path.exists() else {}
    superlink = config.setdefault("superlink", {})
    superlink.setdefault("default", "local")
    superlink.setdefault("local", {"address": ":local:"})
    superlink[name] = {"address": address, "root-certificates": str(ca_cert)}
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(config))
    return path
