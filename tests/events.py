"""Reading TensorBoard event files back (imported as `from events import read_events`)."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def read_events(directory: Path) -> dict[str, dict[int, float]]:
    """Every scalar in a run's event files: {tag: {step: value}}, checked to be marked
    for TensorBoard's scalars plug-in."""
    found: dict[str, dict[int, float]] = {}
    for path in directory.glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "scalars"
                assert value.metadata.data_class == summary_pb2.DATA_CLASS_SCALAR
                found.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return found
