"""Deployment credentials and the FLWR_HOME connection, checked with the libraries that use them."""

from __future__ import annotations

import ipaddress
import stat
import tomllib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from fl_app.ops.provision import make_node_key, make_tls, write_connection


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_superlink_certificate_is_signed_by_the_ca_with_the_requested_sans(tmp_path):
    files = make_tls(tmp_path, ["127.0.0.1", "superlink.example.org"])
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sans.get_values_for_type(x509.DNSName) == ["superlink.example.org"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert mode(files.server_key) == 0o600
    assert mode(tmp_path / "ca.key") == 0o600
    with pytest.raises(FileExistsError, match="--force"):
        make_tls(tmp_path, ["127.0.0.1"])
    with pytest.raises(ValueError, match="hosts=\\[\\]"):
        make_tls(tmp_path / "x", [])


def test_node_keys_are_ecdsa_in_openssh_format_as_flower_loads_them(tmp_path):
    private, public = make_node_key(tmp_path, "hospital-a")
    assert mode(private) == 0o600
    key = load_ssh_private_key(private.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(load_ssh_public_key(public.read_bytes()), ec.EllipticCurvePublicKey)
    with pytest.raises(FileExistsError):
        make_node_key(tmp_path, "hospital-a")


def test_write_connection_keeps_other_connections(tmp_path):
    (tmp_path / "config.toml").write_text(
        '[superlink]\ndefault = "mine"\n[superlink.mine]\naddress = "10.0.0.1:8000"\n'
    )
    write_connection("fl-app-local", "127.0.0.1:9000", tmp_path / "ca.crt", tmp_path)
    config = tomllib.loads((tmp_path / "config.toml").read_text())["superlink"]
    assert config["default"] == "mine"
    assert config["mine"] == {"address": "10.0.0.1:8000"}
    assert config["fl-app-local"]["root-certificates"] == str(tmp_path / "ca.crt")
