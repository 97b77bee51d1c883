"""Exact federated metrics: Keras metric states that add up across holders.

A Keras metric keeps running state and computes its value from it at the end: `Mean`
metrics (accuracy, MAE, the loss) keep a total and a count, confusion metrics (AUC,
precision, recall) keep true/false positive/negative counts per threshold, `R2Score`
keeps sums of the targets, their squares and the squared residuals. Those states are
sums over examples, so the sum of every holder's state is the state Keras would have
reached on the pooled data, and the metric computed from it is the pooled value, not a
mean of per-holder values (a mean of AUCs is not an AUC).

`MetricStates` reads a compiled model's metrics once: the leaf metrics (inside Keras'
CompileMetrics), the name each is reported under, and whether its state is a sum over
examples. A holder sends `state()` after `evaluate`; the server adds the states of all
holders and asks `pooled(total, examples)` for the values.
"""

from __future__ import annotations

import keras
import numpy as np

# Metrics whose state is a sum over examples (subclasses included).
SUMMED = (
    keras.metrics.Sum,
    keras.metrics.Mean,  # MeanMetricWrapper: accuracy, MAE, MSE, crossentropies, RMSE
    keras.metrics.TruePositives,
    keras.metrics.TrueNegatives,
    keras.metrics.FalsePositives,
    keras.metrics.FalseNegatives,
    keras.metrics.Precision,
    keras.metrics.Recall,
    keras.metrics.SensitivityAtSpecificity,
    keras.metrics.SpecificityAtSensitivity,
    keras.metrics.PrecisionAtRecall,
    keras.metrics.RecallAtPrecision,
    keras.metrics.AUC,
    keras.metrics.FBetaScore,
    keras.metrics.IoU,
    keras.metrics.R2Score,
)
# Mean-based, but of a statistic of each batch, not of each example.
PER_BATCH = (keras.metrics.PearsonCorrelation, keras.metrics.ConcordanceCorrelation)
COUNTS = ("count", "num_samples")  # one per example (unweighted evaluation)
TALLIES = ("true_positives", "true_negatives", "false_positives", "false_negatives")


class MetricStates:
    """The leaf metrics of compiled `net`, by reported name (see the module)."""

    def __init__(self, net: keras.Model) -> None:
        self.net = net
        self.leaves = _named_leaves(net)
        self.sizes = [sum(int(np.prod(v.shape)) for v in m.variables) for _, m in self.leaves]

    @property
    def size(self) -> int:
        return sum(self.sizes)

    @property
    def signature(self) -> str:
        """What must be the same on both sides for states to add: names, classes, sizes."""
        return ";".join(
            f"{name}:{type(m).__name__}:{size}"
            for (name, m), size in zip(self.leaves, self.sizes, strict=True)
        )

    def state(self) -> np.ndarray:
        """Every leaf's variables, flattened, as float64 (after `evaluate`)."""
        parts = [np.ravel(v.numpy()) for _, m in self.leaves for v in m.variables]
        return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)

    def summable(self, state: np.ndarray, examples: int) -> set[str]:
        """The names whose part of one holder's `state` is a sum over its `examples`
        examples: a summed metric with finite values, its counts equal to `examples`,
        its tallies in [0, examples x outputs]. Raises ValueError for a state of the
        wrong size."""
        if state.shape != (self.size,):
            raise ValueError(f"a metric state of {state.size} values, expected {self.size}")
        return {
            name
            for name, m, values in self._split(state)
            if _sums_examples(m, values, examples, _outputs(self.net))
        }

    def pooled(self, total: np.ndarray, names: set[str]) -> dict[str, float]:
        """The values of the metrics `names` from the summed state `total`."""
        values = {}
        for name, m, parts in self._split(total):
            if name in names:
                for variable, part in zip(m.variables, parts.values(), strict=True):
                    variable.assign(part.reshape(variable.shape).astype(variable.dtype))
                values[name] = float(np.asarray(m.result()))
                m.reset_state()
        return values

    def _split(self, state: np.ndarray):
        """(name, metric, {variable name: its values}) of every leaf."""
        start = 0
        for name, m in self.leaves:
            parts = {}
            for v in m.variables:
                size = int(np.prod(v.shape))
                parts[v.name] = state[start : start + size]
                start += size
            yield name, m, parts


def server_metric_states(net: keras.Model) -> MetricStates | None:
    """`MetricStates` of compiled `net` where there is no data (the server): Keras builds
    a model's metrics from the first batch it evaluates, so one batch of zeros shaped
    like the model's inputs and targets is evaluated and the metrics reset. None when
    that batch cannot be made for this model (metrics are then means of clients)."""
    try:
        x = keras.tree.map_structure(_zeros_like_input, net.input)
        y_pred = keras.ops.convert_to_numpy(net(x, training=False))
        loss = net.loss if isinstance(net.loss, str) else getattr(net.loss, "name", "")
        y = np.zeros(1, np.int32) if "sparse" in str(loss) else np.zeros_like(y_pred)
        net.evaluate(x, y, verbose=0)
        net.reset_metrics()
        return MetricStates(net)
    except (ValueError, TypeError, AttributeError):
        return None


def _zeros_like_input(tensor) -> np.ndarray:
    shape = (1, *(d or 1 for d in tensor.shape[1:]))
    if tensor.dtype == "string":
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=tensor.dtype)


def _named_leaves(net: keras.Model) -> list[tuple[str, keras.metrics.Metric]]:
    """(reported name, metric) of every metric with state, in `net.metrics` order. The
    names are the keys of Keras' own `get_metrics_result()`: each leaf's result is
    swapped for a marker while Keras names them, so its naming rules are not copied."""
    leaves = []
    for metric in net.metrics:
        inner = getattr(metric, "metrics", None)  # CompileMetrics holds the compiled ones
        leaves.extend(inner if isinstance(inner, list) else [metric])
    leaves = [m for m in leaves if m.variables]
    markers = {}
    for index, m in enumerate(leaves):
        markers[f"fl_app-marker-{index}"] = m
        m.result = (lambda marker: lambda: marker)(f"fl_app-marker-{index}")
    try:
        named = net.get_metrics_result()
    finally:
        for m in leaves:
            del m.result
    return [(name, markers[value]) for name, value in named.items() if value in markers]


def _sums_examples(m: keras.metrics.Metric, parts: dict, examples: int, outputs: int) -> bool:
    if not isinstance(m, SUMMED) or isinstance(m, PER_BATCH):
        return False
    for name, values in parts.items():
        if not np.all(np.isfinite(values)):
            return False
        if name in COUNTS and not np.all(values == examples):
            return False
        if name in TALLIES and not np.all((values >= 0) & (values <= examples * outputs)):
            return False
    return True


def _outputs(net: keras.Model) -> int:
    """Values the model outputs per example (the most a tally can grow per example)."""
    return max(1, sum(int(np.prod(out.shape[1:])) for out in keras.tree.flatten(net.outputs)))
