"""Where a task's examples come from: a bundled scikit-learn set or a user's callable.

A source is named by a string: a bundled set (`digits`, `breast_cancer`, `diabetes`,
`synthetic`) or the import path of a callable (`package.module.function` or
`package.module:function`) that returns `(x, y)` (`x` one array or a dict of named
arrays) or a `datasets.Dataset` with a `label` column, called with `args` as its keyword
arguments. Nothing downloads.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, make_classification

from fl_app.ml.checks import DataError, checked
from fl_app.ml.columns import Columns, Inputs, from_dataset, hf_split, select
from fl_app.ml.features import Features
from fl_app.ml.scaling import PREPROCESSING  # noqa: F401  (re-exported: config checks it)


@dataclass(frozen=True)
class DataSpec:
    """What a task's data is (hashable, so pools and partitions can be cached)."""

    source: str  # a bundled set's name, or the import path of a callable -> (x, y)
    args: str = "{}"  # keyword arguments of the callable, as JSON (hashable, exact)
    preprocess: str = "none"  # none | standardize
    # standardize's public statistics as JSON ({"mean": ..., "std": ...}); "" = each
    # holder's own (private: refused under record-level DP)
    stats: str = ""
    classification: bool = True  # integer labels (stratified splits, Dirichlet partitions)
    feature_shape: tuple[int, ...] | None = None  # shape of one example, when known
    num_classes: int | None = None  # label range 0..num_classes-1, when known

    @property
    def kwargs(self) -> dict[str, Any]:
        """The callable's keyword arguments."""
        return json.loads(self.args)

    @classmethod
    def of(cls, data: DataSpec | str) -> DataSpec:
        """`data` itself, or the spec of the bundled set it names."""
        if isinstance(data, DataSpec):
            return data
        if data not in BUNDLED:
            raise ValueError(f"task={data!r} is unknown: allowed {sorted(BUNDLED)} (bundled sets)")
        return BUNDLED[data]


def _digits() -> tuple[np.ndarray, np.ndarray]:
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., np.newaxis]
    return x, bunch.target.astype(np.int64)


def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    bunch = load_breast_cancer()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64)


def _diabetes() -> tuple[np.ndarray, np.ndarray]:
    # The target (disease progression, 25..346) in units of 100: a fixed unit, not a
    # statistic of the data, so that an MLP starting near 0 needs no huge steps.
    bunch = load_diabetes()
    return bunch.data.astype(np.float32), (bunch.target / 100.0).astype(np.float32)


def _synthetic() -> tuple[np.ndarray, np.ndarray]:
    # Generated at run time from a fixed seed (nothing downloads): enough rows for a
    # thousand clients of ~100 examples each.
    x, y = make_classification(
        n_samples=120_000, n_features=20, n_informative=10, n_redundant=4, n_classes=2,
        class_sep=0.8, flip_y=0.02, random_state=0,
    )  # fmt: skip
    return x.astype(np.float32), y.astype(np.int64)


_BUNDLED_LOADERS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "digits": _digits,
    "breast_cancer": _breast_cancer,
    "diabetes": _diabetes,
    "synthetic": _synthetic,
}
# Public statistics of the bundled tabular sets, from their published documentation (not
# computed from the rows the holders train on): breast cancer's DESCR lists each
# feature's min and max, mapped here onto [-1, 1] (mean = mid-range, std = half-range);
# diabetes' DESCR says each feature is mean-centred and scaled so that its 442 squares
# sum to 1, i.e. mean 0 and standard deviation 1/sqrt(442).
_BREAST_CANCER_RANGES = (
    (6.981, 28.11), (9.71, 39.28), (43.79, 188.5), (143.5, 2501.0), (0.053, 0.163),
    (0.019, 0.345), (0.0, 0.427), (0.0, 0.201), (0.106, 0.304), (0.05, 0.097),
    (0.112, 2.873), (0.36, 4.885), (0.757, 21.98), (6.802, 542.2), (0.002, 0.031),
    (0.002, 0.135), (0.0, 0.396), (0.0, 0.053), (0.008, 0.079), (0.001, 0.03),
    (7.93, 36.04), (12.02, 49.54), (50.41, 251.2), (185.2, 4254.0), (0.071, 0.223),
    (0.027, 1.058), (0.0, 1.252), (0.0, 0.291), (0.156, 0.664), (0.055, 0.208),
)  # fmt: skip
PUBLISHED_STATS = {
    "breast_cancer": {
        "mean": [round((lo + hi) / 2, 6) for lo, hi in _BREAST_CANCER_RANGES],
        "std": [round((hi - lo) / 2, 6) for lo, hi in _BREAST_CANCER_RANGES],
    },
    "diabetes": {"mean": 0.0, "std": round(442**-0.5, 8)},
}
PUBLISHED = "published"  # task.preprocess_stats: the bundled source's PUBLISHED_STATS

BUNDLED = {
    # 8x8 handwritten digits, already scaled to [0, 1]
    "digits": DataSpec("digits", feature_shape=(8, 8, 1), num_classes=10),
    # Wisconsin breast-cancer diagnosis, 30 features
    "breast_cancer": DataSpec(
        "breast_cancer",
        preprocess="standardize",
        stats=json.dumps(PUBLISHED_STATS["breast_cancer"]),
        feature_shape=(30,),
        num_classes=2,
    ),
    # scikit-learn's make_classification, 120,000 rows x 20 features, seeded (scale runs);
    # its features are on the generator's unit scale already
    "synthetic": DataSpec("synthetic", feature_shape=(20,), num_classes=2),
    # diabetes progression after one year (regression), 10 features
    "diabetes": DataSpec(
        "diabetes",
        preprocess="standardize",
        stats=json.dumps(PUBLISHED_STATS["diabetes"]),
        classification=False,
        feature_shape=(10,),
    ),
}


def table(
    path: str, target: str, features: Columns = None, inputs: Inputs = None, exclude: Columns = None
) -> tuple[Features, np.ndarray]:
    """The rows of a CSV or Parquet file with named columns, and the `target` column.

    The model's input is either one float32 array of the `features` columns (default:
    every column but `target`) or, with `inputs`, named arrays for a model with several
    named inputs: `{input_name: column}` (one value per example) or `{input_name: [columns]}`
    (a vector), integer columns kept integer (ids for an `Embedding`).

    Use as `source: fl_app.ml.sources.table` with `source_args: {path: ..., target: ...}`.
    """
    import pandas as pd  # only for table sources

    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"path={str(file)!r} is invalid: no such file")
    if file.suffix not in (".csv", ".parquet"):
        raise DataError(f"path={str(file)!r} is invalid: allowed a .csv or .parquet file")
    try:
        frame = pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file)
    except Exception as err:  # pandas and pyarrow raise many types on a bad file
        raise DataError(
            f"{file} is not a readable {file.suffix[1:]} table: {type(err).__name__}: {err}"
        ) from err
    return select(
        lambda name: frame[name].to_numpy(), list(frame.columns), target, features, inputs,
        where=str(file), exclude=exclude,
    )  # fmt: skip


def huggingface(
    dataset: str,
    target: str,
    features: Columns = None,
    inputs: Inputs = None,
    split: str = "train",
    exclude: Columns = None,
    **load_dataset_kwargs: Any,
) -> tuple[Features, np.ndarray]:
    """A Hugging Face dataset's `split`: its `features` or named `inputs` columns (as in
    `table`) and the `target` column.

    `dataset` is a hub name or a builder such as `parquet` with `data_files=...`, loaded
    through flwr-datasets' `FederatedDataset` (its `load_dataset` keyword arguments), or a
    directory written by `Dataset.save_to_disk`, which `load_dataset` refuses and
    `datasets.load_from_disk` reads. The rows are then partitioned over the clients by
    the same flwr-datasets partitioners as every source.
    """
    table_ = hf_split(dataset, split, load_dataset_kwargs)
    return from_dataset(
        table_, target, features, inputs, where=f"dataset {dataset!r}", exclude=exclude
    )


def resolve(path: str) -> Any:
    """The object an import path (`pkg.mod.name` or `pkg.mod:name`) names."""
    module, sep, name = path.partition(":")
    if not sep:
        module, _, name = path.rpartition(".")
    if not module or not name:
        raise ValueError(f"{path!r} is not an import path: allowed 'package.module.name'")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{path!r} does not import: {type(err).__name__}: {err}") from err


def load_source(data: DataSpec) -> tuple[Features, np.ndarray]:
    """The examples and targets of a source, checked to pair up."""
    if data.source in _BUNDLED_LOADERS:
        x, y = _BUNDLED_LOADERS[data.source]()
    else:
        made = _call(resolve(data.source), data.kwargs)
        if isinstance(made, Dataset):  # Hugging Face's convention: a `label` column
            made = from_dataset(made, "label", None, None, where=f"source {data.source!r}")
        x, y = made
    return checked(f"source {data.source!r}", x, y, classification=data.classification)


def _call(fn: Any, args: Mapping[str, Any]) -> Any:
    if not callable(fn):
        raise ValueError(f"{fn!r} is not callable")
    return fn(**args)
