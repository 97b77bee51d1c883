"""Any Keras 3 model: several named inputs with integer ids kept integer, subclassed
models, one-hot targets, a callable returning a `datasets.Dataset`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from clients import client_of

from fl_app.config import compose_config
from fl_app.config.task import data_spec
from fl_app.fl.factory import check_task, new_model
from fl_app.ml.data import PartitionSpec, pool_and_server_test, pool_partitions
from fl_app.ml.models import check_fits, weights_of
from fl_app.ml.node_files import export_partitions, read_data_file

WARDS = textwrap.dedent(
    '''
    """Two named inputs: vital signs (floats) and a ward id (an integer into an Embedding)."""
    import keras
    import numpy as np


    def build(wards=12, width=8, ward_input="ward"):
        vitals = keras.Input((3,), name="vitals")
        ward = keras.Input((), dtype="int32", name=ward_input)
        x = keras.layers.Concatenate()([vitals, keras.layers.Embedding(wards, 4)(ward)])
        x = keras.layers.BatchNormalization()(keras.layers.Dense(width, activation="relu")(x))
        out = keras.layers.Dense(1, activation="sigmoid")(x)
        return keras.Model({"vitals": vitals, ward_input: ward}, out)


    @keras.saving.register_keras_serializable("wards")
    class Risk(keras.Model):
        """A subclassed model, registered for serialisation, built by its factory."""

        def __init__(self, classes=3, **kwargs):
            super().__init__(**kwargs)
            self.classes = classes
            self.hidden = keras.layers.Dense(8, activation="relu")
            self.out = keras.layers.Dense(classes, activation="softmax")

        def call(self, x):
            return self.out(self.hidden(x))

        def get_config(self):
            return {**super().get_config(), "classes": self.classes}


    def risk(classes=3, built=True):
        model = Risk(classes)
        if built:
            model(np.zeros((1, 4), "float32"))  # Keras 3 builds a subclassed model by a call
        return model


    def onehot(rows=150):
        rng = np.random.default_rng(2)
        x = rng.normal(size=(rows, 4)).astype("float32")
        labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
        return x, np.eye(3, dtype="float32")[labels]


    def hf_rows(rows=120):
        from datasets import Dataset

        rng = np.random.default_rng(4)
        x = rng.normal(size=(rows, 4)).astype("float32")
        columns = {f"f{i}": x[:, i] for i in range(4)}
        return Dataset.from_dict({**columns, "label": (x[:, 0] > 0).astype("int64")})
    '''
)


@pytest.fixture
def wards(tmp_path, monkeypatch):
    import pandas as pd

    (tmp_path / "wards.py").write_text(WARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(9)
    frame = pd.DataFrame(rng.normal(50, 10, size=(240, 3)), columns=["age", "bp", "hr"])
    frame["ward_id"] = rng.integers(0, 12, size=240)
    frame["outcome"] = ((frame["ward_id"] % 2 == 0) ^ (frame["age"] > 50)).astype("int64")
    frame.to_parquet(tmp_path / "patients.parquet")
    return tmp_path


def named_task(path, *extra: str) -> list[str]:
    return [
        "task.name=wards", "task.model=wards.build", "task.source=fl_app.ml.sources.table",
        f"+task.source_args.path={path}", "+task.source_args.target=outcome",
        "+task.source_args.inputs={vitals: [age, bp, hr], ward: ward_id}",
        "task.preprocess=standardize", "task.objective.loss=binary_crossentropy",
        "task.objective.metrics=[auc]", "task.objective.primary=auc",
        "federation.num_supernodes=3", *extra,
    ]  # fmt: skip


def test_named_inputs_keep_integer_ids_and_train_with_batchnorm(wards):
    tmp_path = wards
    cfg = compose_config(named_task(tmp_path / "patients.parquet"))
    client = client_of(cfg)
    train = client.data.train.x
    assert set(train) == {"vitals", "ward"}
    assert train["ward"].dtype == np.int64 and train["ward"].shape == (len(client.data.train),)
    assert set(np.unique(train["ward"])) <= set(range(12))  # ids are not standardised
    assert train["vitals"].dtype == np.float32
    assert np.allclose(train["vitals"].mean(axis=0), 0, atol=1e-4)  # this holder's statistics
    check_task(cfg, new_model(cfg))
    start = weights_of(new_model(cfg))
    weights, _, metrics = client.fit(start, {})
    assert "train_auc" in metrics and 0 <= client.evaluate(weights, {})[2]["auc"] <= 1
    moving = [i for i, w in enumerate(client.net.weights) if "moving" in w.path]
    assert len(moving) == 2 and all(not np.allclose(weights[i], start[i]) for i in moving)


@pytest.mark.parametrize("fmt", ["npz", "parquet", "csv"])
def test_node_files_of_named_inputs_keep_column_names_and_dtypes(wards, fmt):
    import pandas as pd

    tmp_path = wards
    data = data_spec(compose_config(named_task(tmp_path / "patients.parquet")).task)
    paths = export_partitions(
        data, PartitionSpec("iid", 3), tmp_path / fmt, server_test_fraction=0.2, seed=0,
        file_format=fmt,
    )  # fmt: skip
    if fmt == "parquet":
        assert list(pd.read_parquet(paths[1]).columns) == ["age", "bp", "hr", "ward_id", "outcome"]
    rows = read_data_file(paths[1], data)
    pool, _ = pool_and_server_test(data, 0.2, 0)
    expected = pool.take(pool_partitions(data, 0.2, PartitionSpec("iid", 3), 0)[1])
    assert rows.x["ward"].dtype == np.int64
    assert np.array_equal(rows.x["ward"], expected.x["ward"])
    assert np.allclose(rows.x["vitals"], expected.x["vitals"], rtol=1e-6)
    assert np.array_equal(rows.y, expected.y)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["+task.model_args.ward_input=unit"],
         r"takes the named inputs \['unit', 'vitals'\]; the data gives \['vitals', 'ward'\]"),
        (["+task.source_args.features=[age]"], "either features or inputs"),
        (["task.source_args.inputs={vitals: [age, bp], ward: ward_id}"],
         r"input 'vitals' takes examples of shape \(3,\); the data's are \(2,\)"),
        (["task.source_args.inputs={vitals: [age, bp, pulse], ward: ward_id}"],
         "has no 'pulse' column"),
    ],
)  # fmt: skip
def test_named_inputs_that_do_not_fit_fail_before_training(wards, extra, message):
    tmp_path = wards
    cfg = compose_config(named_task(tmp_path / "patients.parquet", *extra))
    with pytest.raises(ValueError, match=message):
        check_task(cfg, new_model(cfg))


def test_a_subclassed_model_with_one_hot_targets_trains_and_round_trips(wards):
    import keras

    tmp_path = wards
    task = [
        "task.name=risk", "task.model=wards.risk", "task.source=wards.onehot",
        "task.objective.loss=categorical_crossentropy", "federation.num_supernodes=3",
    ]  # fmt: skip
    cfg = compose_config(task)
    client = client_of(cfg)
    assert client.data.train.y.dtype == np.int64 and client.data.train.y.ndim == 1
    check_task(cfg, new_model(cfg))
    weights, _, metrics = client.fit(weights_of(new_model(cfg)), {})
    assert 0 <= metrics["train_accuracy"] <= 1
    client.net.save(tmp_path / "risk.keras")
    saved = compose_config([*task[:1], f"task.model={tmp_path / 'risk.keras'}", *task[2:]])
    reloaded = new_model(saved)
    assert type(reloaded).__name__ == "Risk"
    reloaded.set_weights(weights)
    assert reloaded.predict(np.zeros((2, 4), np.float32), verbose=0).shape == (2, 3)
    with pytest.raises(ValueError, match=r"returned a model without weights \(not built\)"):
        new_model(compose_config([*task, "+task.model_args.built=false"]))
    keras.saving.get_custom_objects().pop("wards>Risk", None)


def test_a_callable_may_return_a_hugging_face_dataset_with_a_label_column(wards):
    cfg = compose_config(
        ["task.name=hf", "task.model=mlp", "+task.model_args.input_shape=[4]",
         "+task.model_args.outputs=2", "task.source=wards.hf_rows", "federation.num_supernodes=3"]
    )  # fmt: skip
    client = client_of(cfg)
    assert client.data.train.x.shape[1:] == (4,) and client.data.train.y.dtype == np.int64
    check_fits(client.net, client.data.train, dry_run=True)


def test_the_scaffolds_own_task_composes_from_its_conf_and_trains(tmp_path, monkeypatch):
    """What `fl-app new` writes trains as it is: its YAML found first on Hydra's search
    path, its module's model and data; a second `new` into the same place is refused."""
    from fl_app.ops.scaffold import new_app

    new_app(tmp_path / "app", "clinic")
    monkeypatch.syspath_prepend(str(tmp_path / "app"))
    cfg = compose_config(["task=clinic", "federation.num_supernodes=3"], tmp_path / "app" / "conf")
    assert cfg.task.model == "clinic_task.build" and cfg.task.objective.primary == "auc"
    check_task(cfg, new_model(cfg))
    client = client_of(cfg)
    _, _, metrics = client.fit(weights_of(new_model(cfg)), {})
    assert "train_auc" in metrics
    exported = subprocess.run(
        [
            str(Path(sys.executable).parent / "fl-app"),
            "export-partitions",
            "--task",
            "clinic",
            "--num-partitions",
            "2",
            "--out",
            str(tmp_path / "nodes"),
            "--format",
            "parquet",
        ],
        cwd=tmp_path / "app",
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )  # fmt: skip  (run in the app's directory: its conf/ and module are found)
    assert exported.returncode == 0, exported.stderr[-2000:]
    rows = read_data_file(tmp_path / "nodes" / "partition_1.parquet", data_spec(cfg.task))
    # 300 rows / 2: under HE (the default) nothing is held out for the server
    assert rows.x.shape[1:] == (4,) and len(rows) == 150
    assert "partition_1.parquet 150; 0 held out" in exported.stdout
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        new_app(tmp_path / "app", "clinic")
    with pytest.raises(ValueError, match="name='Clinic' is invalid"):
        new_app(tmp_path / "other", "Clinic")
