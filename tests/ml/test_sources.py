"""Tasks as plug-ins: a user's model, data and objective named in config; diabetes built in."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest
from clients import client_of, he_client

from fl_app.config import ConfigError, compose_config
from fl_app.config.task import data_spec
from fl_app.config.validate import MODELS
from fl_app.fl.factory import new_model
from fl_app.ml.data import PartitionSpec, load_client_data
from fl_app.ml.models import BUILTIN_MODELS, weights_of
from fl_app.ml.node_files import export_partitions, read_data_file

USER_TASK = textwrap.dedent(
    '''
    """A user's task module, outside fl_app: a functional Keras model and its data."""
    import keras
    import numpy as np


    def build(width=8):
        inputs = keras.Input((6,), name="features")
        x = keras.layers.Dense(width, activation="relu")(inputs)
        x = keras.layers.BatchNormalization()(x)
        return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


    def load(rows=240):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(rows, 6)).astype("float32")
        return x, (x[:, 0] + x[:, 1] > 0).astype("int64")
    '''
)
USER_OVERRIDES = [
    "task.name=mine",
    "task.model=mytask.build",
    "+task.model_args.width=4",
    "task.source=mytask.load",
    "+task.source_args.rows=300",
    "task.preprocess=standardize",
    "task.objective.loss=binary_crossentropy",
    "task.objective.metrics=[accuracy,auc]",
    "task.objective.primary=auc",
    "federation.num_supernodes=3",
]


@pytest.fixture
def user_task(tmp_path, monkeypatch):
    (tmp_path / "mytask.py").write_text(USER_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    return compose_config(USER_OVERRIDES)


def test_a_user_task_trains_and_reports_its_own_metrics(user_task):
    client = client_of(user_task)
    start = weights_of(new_model(user_task))
    weights, n, train_metrics = client.fit(start, {})
    assert n == len(client.data.train) == 64  # 300 rows - 20 % server test, / 3, - 20 %
    assert {"train_loss", "train_accuracy", "train_auc"} <= set(train_metrics)
    loss, _, metrics = client.evaluate(weights, {})
    assert loss > 0 and 0.0 <= metrics["auc"] <= 1.0 and "accuracy" in metrics
    # BatchNormalization's moving statistics travel with the weights and were updated
    moving = [i for i, w in enumerate(client.net.weights) if "moving" in w.path]
    assert len(moving) == 2
    assert all(not np.allclose(weights[i], start[i]) for i in moving)


def test_built_in_models_are_the_ones_the_config_allows():
    assert set(BUILTIN_MODELS) == set(MODELS)


def test_diabetes_is_the_design_documents_regression_mlp():
    cfg = compose_config(["task=diabetes"])
    net = new_model(cfg)
    dense = [layer for layer in net.layers if layer.__class__.__name__ == "Dense"]
    assert [layer.units for layer in dense] == [10, 10, 1]
    assert [layer.activation.__name__ for layer in dense] == ["relu", "relu", "linear"]
    assert net.input_shape == (None, 10) and net.loss == "mse"
    client = client_of(cfg)
    assert client.data.train.y.dtype == np.float32  # values, not labels
    weights, _, _ = client.fit(weights_of(net), {})
    _, _, metrics = client.evaluate(weights, {})
    assert {"mae", "r2_score"} <= set(metrics)


def test_regression_data_files_keep_their_values(tmp_path):
    paths = export_partitions(
        "diabetes", PartitionSpec("iid", 2), tmp_path, server_test_fraction=0.2, seed=0,
        file_format="csv",
    )  # fmt: skip
    rows = read_data_file(paths[0], "diabetes")
    assert rows.x.shape[1:] == (10,) and rows.y.dtype == np.float32
    assert len(np.unique(rows.y)) > 50  # not cut to integer labels


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task.model=nowhere.build"], r"task\.model='nowhere\.build' is invalid"),
        (["task.model=missing.keras"], r"task\.model='missing\.keras' is invalid: allowed an"),
        (["task.source=nowhere.load"], r"task\.source='nowhere\.load' is invalid"),
        (["task.preprocess=zscore"], r"task\.preprocess='zscore' is invalid"),
        (["task.objective.type=ranking"], r"task\.objective\.type='ranking' is invalid"),
        (["task.objective.primary=auc"], r"task\.objective\.primary='auc' is invalid"),
        (["task=diabetes", "partition=dirichlet"], r"partition\.name='dirichlet' is invalid"),
    ],
)
def test_bad_task_values_fail_before_training_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose_config(overrides)


def test_under_he_a_weight_beyond_the_encoding_bound_names_its_layer(tmp_path):
    from fl_app.crypto.keys import generate_keys
    from fl_app.crypto.presets import get_preset
    from fl_app.fl.protocol import REFERENCE_KEY

    generate_keys(tmp_path, "compact")
    cfg = compose_config(["task=diabetes"])
    client = he_client(
        lambda: new_model(cfg), client_of(cfg).data, preset=get_preset("compact"),
        secret_context=str(tmp_path / "secret.ctx"), local_epochs=1, batch_size=16, seed=0,
    )  # fmt: skip
    weights = weights_of(client.net)
    weights[2] = weights[2] + 100.0  # the second Dense layer's kernel
    layer = client.net.weights[2].path
    assert layer.endswith("/kernel")
    with pytest.raises(ValueError, match=re.escape(layer) + r": weight array 2 has \|w\| = 1\d\d"):
        names = [w.path for w in client.net.weights]
        client.codec.encode(weights, 10, {REFERENCE_KEY: 10.0}, names)


def test_a_parquet_table_source_with_named_columns_feeds_every_holder(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(150, 3)), columns=["age", "bmi", "bp"])
    frame["noise"] = rng.normal(size=150)
    frame["outcome"] = (frame["age"] - frame["bp"] > 0).astype("int64")
    frame.to_parquet(tmp_path / "patients.parquet")
    table_task = [
        "task.name=patients",
        "task.model=mlp",
        "+task.model_args.input_shape=[3]",
        "+task.model_args.outputs=2",
        "task.source=fl_app.ml.sources.table",
        f"+task.source_args.path={tmp_path / 'patients.parquet'}",
        "+task.source_args.target=outcome",
        "+task.source_args.features=[age,bmi,bp]",
        "task.preprocess=standardize",
        "federation.num_supernodes=3",
    ]
    cfg = compose_config(table_task)
    client = client_of(cfg)
    assert client.data.train.x.shape[1:] == (3,) and client.data.train.y.dtype == np.int64
    weights, _, _ = client.fit(weights_of(new_model(cfg)), {})
    assert "accuracy" in client.evaluate(weights, {})[2]
    # a SuperNode's own file with the same columns, in any of the file formats
    for fmt in ("parquet", "csv"):
        paths = export_partitions(
            data_spec(cfg.task), PartitionSpec("iid", 3), tmp_path / fmt,
            server_test_fraction=0.2, seed=0, file_format=fmt,
        )  # fmt: skip
        rows = read_data_file(paths[1], data_spec(cfg.task))
        assert rows.x.shape[1:] == (3,) and set(np.unique(rows.y)) <= {0, 1}
    bad = compose_config([*table_task[:-4], "+task.source_args.target=death", *table_task[-3:]])
    with pytest.raises(ValueError, match="has no 'death' column"):
        client_of(bad)


@pytest.mark.parametrize("partition", ["iid", "dirichlet"])
def test_hugging_face_datasets_from_parquet_data_files_and_save_to_disk(tmp_path, partition):
    import pandas as pd
    from datasets import Dataset

    rng = np.random.default_rng(5)
    x = rng.normal(size=(240, 3)).astype("float32")
    rows = Dataset.from_dict({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": (x[:, 0] > 0) * 1})
    halves = [str(tmp_path / f"part{i}.parquet") for i in (0, 1)]
    rows.select(range(120)).to_parquet(halves[0])
    rows.select(range(120, 240)).to_parquet(halves[1])
    rows.save_to_disk(str(tmp_path / "saved"))
    sources = {
        "parquet": ["+task.source_args.dataset=parquet",
                    f"+task.source_args.data_files=[{halves[0]},{halves[1]}]",
                    f"+task.source_args.cache_dir={tmp_path / 'cache'}"],
        "save_to_disk": [f"+task.source_args.dataset={tmp_path / 'saved'}"],
    }  # fmt: skip
    for extra in sources.values():
        cfg = compose_config(
            ["task.name=hf", "task.model=mlp", "+task.model_args.input_shape=[3]",
             "+task.model_args.outputs=2", "task.source=fl_app.ml.sources.huggingface",
             "+task.source_args.target=label", *extra, f"partition={partition}",
             "partition.min_partition_size=5", "federation.num_supernodes=3"]
        )  # fmt: skip
        parts = [
            load_client_data(
                data_spec(cfg.task),
                PartitionSpec(partition, 3, min_partition_size=5),
                pid,
                server_test_fraction=0.2,
                client_test_fraction=0.2,
                seed=0,
            )
            for pid in range(3)
        ]
        assert sum(len(p.train) + len(p.test) for p in parts) == 240 - 48
        assert all(p.train.x.shape[1:] == (3,) for p in parts)
        # a SuperNode's own file keeps the dataset's column names and reads back
        files = export_partitions(
            data_spec(cfg.task), PartitionSpec(partition, 3, min_partition_size=5),
            tmp_path / f"nodes_{len(extra)}", server_test_fraction=0.2, seed=0,
            file_format="parquet",
        )  # fmt: skip
        assert list(pd.read_parquet(files[0]).columns) == ["a", "b", "c", "label"]
        assert read_data_file(files[0], data_spec(cfg.task)).x.shape[1:] == (3,)


THREE_CLASSES = textwrap.dedent(
    """
    import numpy as np


    def load():
        rng = np.random.default_rng(1)
        return rng.normal(size=(90, 3)).astype("float32"), np.arange(90) % 3
    """
)


@pytest.mark.parametrize(
    ("shape", "outputs", "objective", "message"),
    [
        (3, 2, [], r"2 output unit\(s\), allowed labels 0\.\.1; .* up to 2"),
        (5, 3, [], r"task\.model takes examples of shape \(5,\); the data's are \(3,\)"),
        (3, 3, ["task.objective.loss=msee"], r"Could not interpret loss identifier: msee"),
        (3, 3, ["task.objective.metrics=[acuracy]", "task.objective.primary=loss"],
         r"Could not interpret metric identifier: acuracy"),
    ],
)  # fmt: skip
def test_a_model_that_does_not_fit_its_data_fails_before_round_one(
    tmp_path, monkeypatch, shape, outputs, objective, message
):
    from fl_app.fl.factory import check_task

    (tmp_path / "three.py").write_text(THREE_CLASSES)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose_config(
        ["task.name=three", "task.model=mlp", "task.source=three.load",
         f"+task.model_args.input_shape=[{shape}]", f"+task.model_args.outputs={outputs}",
         "federation.num_supernodes=3", *objective]
    )  # fmt: skip
    with pytest.raises(ValueError, match=message):  # the server, in simulation
        check_task(cfg, new_model(cfg))
    if not objective:  # a SuperNode checks its own data when it builds the model
        with pytest.raises(ValueError, match=message):
            client_of(cfg).fit(weights_of(new_model(cfg)), {})
