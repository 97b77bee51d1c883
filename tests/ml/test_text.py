"""Text and categorical strings pass through to a model input of dtype "string", whose
own Keras layers encode them (Hashing, StringLookup or TextVectorization with a given
vocabulary); strings for a numeric input are refused with the fix."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

from fl_app.ml.checks import DataError
from fl_app.ml.data import PartitionSpec, load_client_data
from fl_app.ml.models import check_fits, evaluate, train
from fl_app.ml.node_files import export_partitions, read_data_file
from fl_app.ml.sources import DataSpec, load_source

WARDS = ["ICU", "ER", "CARDIO", "ONCO", "PED"]
WORDS = ["pain", "fever", "stable", "chest", "cough", "rest", "severe", "mild"]


@pytest.fixture(scope="module")
def notes_table(tmp_path_factory):
    rng = np.random.default_rng(4)
    n = 240
    frame = pd.DataFrame({"age": rng.normal(60, 12, n), "bp": rng.normal(120, 15, n)})
    frame["ward"] = rng.choice(WARDS, n)
    frame["notes"] = [" ".join(rng.choice(WORDS, rng.integers(1, 5))) for _ in range(n)]
    severe = frame["notes"].str.contains("severe|chest")
    frame["outcome"] = (severe | (frame["ward"] == "ICU")).astype("int64")
    path = tmp_path_factory.mktemp("notes") / "notes.parquet"
    frame.to_parquet(path)
    return path


def _spec(path) -> DataSpec:
    args = {"path": str(path), "target": "outcome",
            "inputs": {"vitals": ["age", "bp"], "ward": "ward", "notes": "notes"}}  # fmt: skip
    import json

    return DataSpec("fl_app.ml.sources.table", args=json.dumps(args), num_classes=2)


def _model() -> keras.Model:
    vitals = keras.Input((2,), name="vitals")
    ward = keras.Input((), dtype="string", name="ward")
    notes = keras.Input((), dtype="string", name="notes")
    ward_ids = keras.layers.StringLookup(vocabulary=WARDS, output_mode="one_hot")(ward)
    words = keras.layers.TextVectorization(vocabulary=WORDS, output_mode="multi_hot")(notes)
    hashed = keras.layers.Embedding(8, 2)(keras.layers.Hashing(num_bins=8)(ward))
    scaled = keras.layers.Normalization(axis=-1, mean=[60, 120], variance=[144, 225])(vitals)
    x = keras.layers.Concatenate()([scaled, ward_ids, words, hashed])
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.Dense(8, activation="relu")(x))
    net = keras.Model({"vitals": vitals, "ward": ward, "notes": notes}, out)
    net.compile(
        keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return net


def test_text_columns_reach_a_string_input_through_partitions_training_and_files(
    notes_table, tmp_path
):
    spec = _spec(notes_table)
    x, _ = load_source(spec)
    assert x["ward"].dtype == object and isinstance(x["notes"][0], str)
    assert x["vitals"].dtype == np.float32
    data = load_client_data(spec, PartitionSpec("iid", 2), 0, server_test_fraction=0.2,
                            client_test_fraction=0.2, seed=0)  # fmt: skip
    net = _model()
    check_fits(net, data.train, dry_run=True)
    train(net, data.train, epochs=10, batch_size=16, seed=1)
    assert evaluate(net, data.test, batch_size=16)["accuracy"] > 0.8
    for fmt in ("npz", "parquet", "csv"):
        files = export_partitions(spec, PartitionSpec("iid", 2), tmp_path / fmt,
                                  server_test_fraction=0.2, seed=0, file_format=fmt)  # fmt: skip
        rows = read_data_file(files[1], spec)
        assert rows.x["notes"].dtype == object and isinstance(rows.x["notes"][0], str), fmt
        assert set(rows.x["ward"]) <= set(WARDS)


def test_strings_for_a_numeric_input_are_refused_with_the_fix(notes_table):
    import json

    args = {"path": str(notes_table), "target": "outcome", "features": ["age", "ward"]}
    with pytest.raises(DataError, match=r"column 'ward' holds .* dtype 'string'"):
        load_source(DataSpec("fl_app.ml.sources.table", args=json.dumps(args)))
    spec = _spec(notes_table)
    data = load_client_data(spec, PartitionSpec("iid", 2), 0, server_test_fraction=0.2,
                            client_test_fraction=0.2, seed=0)  # fmt: skip
    vitals = keras.Input((2,), name="vitals")
    ward = keras.Input((), name="ward")  # float32: not for text
    notes = keras.Input((), dtype="string", name="notes")
    net = keras.Model({"vitals": vitals, "ward": ward, "notes": notes},
                      keras.layers.Dense(2)(vitals))  # fmt: skip
    with pytest.raises(ValueError, match="input 'ward' takes float32; the data's are text"):
        check_fits(net, data.train)
