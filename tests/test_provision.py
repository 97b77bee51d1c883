"""Deployment credentials and per-node data files, checked with the libraries that use them."""

from __future__ import annotations

import ipaddress
import stat
import tomllib

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from fl_app.deploy import write_connection
from fl_app.ml.data import PartitionSpec, export_partitions, load_node_data, read_data_file
from fl_app.provision import make_node_key, make_tls


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


@pytest.mark.parametrize("file_format", ["npz", "csv"])
def test_exported_partitions_round_trip_and_cover_the_pool(tmp_path, file_format):
    spec = PartitionSpec("dirichlet", 4, alpha=1.0)
    paths = export_partitions(
        "breast_cancer", spec, tmp_path, server_test_fraction=0.2, seed=3,
        file_format=file_format,
    )  # fmt: skip
    assert [p.name for p in paths] == [f"partition_{i}.{file_format}" for i in range(4)]
    splits = [read_data_file(p, "breast_cancer") for p in paths]
    assert sum(len(s) for s in splits) == 569 - round(0.2 * 569)
    assert all(s.x.shape[1:] == (30,) for s in splits)
    node = load_node_data(paths[0], "breast_cancer", client_test_fraction=0.25, seed=0)
    assert len(node.train) + len(node.test) == len(splits[0])


def test_bring_your_own_csv_with_a_label_column(tmp_path):
    rows = np.column_stack([np.random.default_rng(0).normal(size=(12, 64)), np.arange(12) % 10])
    header = ",".join([*(f"pixel{i}" for i in range(64)), "label"])
    np.savetxt(tmp_path / "mine.csv", rows, delimiter=",", header=header, comments="")
    data = read_data_file(tmp_path / "mine.csv", "digits")
    assert data.x.shape == (12, 8, 8, 1)
    assert data.y.tolist() == (np.arange(12) % 10).tolist()


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "missing.npz", "no such file"),
        (b"a,b\n1,2\n", "nolabel.csv", "no 'label' column"),
        (b"x", "data.parquet", "allowed a .npz or .csv"),
    ],
)
def test_bad_data_files_name_the_problem(tmp_path, content, name, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_data_file(path, "digits")


def test_wrong_shapes_and_labels_are_refused(tmp_path):
    np.savez(tmp_path / "shape.npz", x=np.zeros((5, 7)), y=np.zeros(5))
    with pytest.raises(ValueError, match="do not fit task 'digits'"):
        read_data_file(tmp_path / "shape.npz", "digits")
    np.savez(tmp_path / "labels.npz", x=np.zeros((5, 30)), y=np.full(5, 3))
    with pytest.raises(ValueError, match=r"labels must be integers 0\.\.1"):
        read_data_file(tmp_path / "labels.npz", "breast_cancer")


def test_write_connection_keeps_other_connections(tmp_path):
    (tmp_path / "config.toml").write_text(
        '[superlink]\ndefault = "mine"\n[superlink.mine]\naddress = "10.0.0.1:8000"\n'
    )
    write_connection("fl-app-local", "127.0.0.1:9000", tmp_path / "ca.crt", tmp_path)
    config = tomllib.loads((tmp_path / "config.toml").read_text())["superlink"]
    assert config["default"] == "mine"
    assert config["mine"] == {"address": "10.0.0.1:8000"}
    assert config["fl-app-local"]["root-certificates"] == str(tmp_path / "ca.crt")
