"""What makes a record-level ε a bound around the DP-SGD step: a ledger that lasts (atomic,
never silently reset, keyed by what the holder holds), no private preprocessing, and the
config checks that refuse what would break it before round 1."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fl_app.config import ConfigError, compose_config
from fl_app.fl.protocol import DP_LEDGER_DIR_KEY, NODE_DATA_KEY, NODE_LEDGER_DIR_KEY
from fl_app.fl.record_dp import ledger_place
from fl_app.ml.data import Split, preprocess
from fl_app.ml.sources import DataSpec
from fl_app.privacy.ledger import Booking, LedgerError, PrivacyLedger

# ---------------------------------------------------------------- the ledger file


def booking(rnd: int) -> Booking:
    return Booking(0.25, 1.2, 8, rnd, "run-1", 0.0)


def test_a_ledger_is_written_whole_private_and_read_back(tmp_path):
    path = tmp_path / "holder" / "ledger.json"
    ledger = PrivacyLedger.open(path)
    assert not path.exists() and ledger.bookings == ()  # nothing is written until a booking
    ledger = ledger.booked(booking(1), None).booked(booking(2), None)
    again = PrivacyLedger.open(path)
    assert again == ledger and again.steps == 16
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["ledger.json"]  # no temporary left


def test_a_write_that_fails_midway_leaves_the_previous_ledger(tmp_path, monkeypatch):
    path = tmp_path / "ledger.json"
    ledger = PrivacyLedger.open(path).booked(booking(1), None)
    before = path.read_text()

    def fails(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("fl_app.privacy.ledger.os.fsync", fails)
    with pytest.raises(OSError, match="disk full"):
        ledger.booked(booking(2), None)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.json"]


def test_a_ledger_that_cannot_be_written_refuses_the_round(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(LedgerError, match=r"cannot be written .* dp-ledger-dir"):
        PrivacyLedger.open(blocked / "ledger.json").booked(booking(1), None)


def test_a_ledger_holds_no_data_only_costs(tmp_path):
    path = tmp_path / "ledger.json"
    PrivacyLedger.open(path).booked(booking(1), None)
    saved = json.loads(path.read_text())
    assert set(saved) == {"format", "holder", "plan", "bookings"}
    assert set(saved["bookings"][0]) == {
        "sampling_rate", "noise_multiplier", "steps", "round", "run", "time",
    }  # fmt: skip


# ---------------------------------------------------------------- which ledger is a holder's


def split(seed: int) -> Split:
    rng = np.random.default_rng(seed)
    return Split(rng.normal(size=(10, 3)).astype(np.float32), rng.integers(0, 2, 10))


def test_a_simulated_holder_is_its_partition_and_data_not_its_node_id(tmp_path):
    config = {DP_LEDGER_DIR_KEY: str(tmp_path)}
    node = {"partition-id": 1, "num-partitions": 3}
    first = ledger_place(node, split(0))(config)
    # A resumed run: the same partition and data, under a new Flower node id.
    assert ledger_place({**node, "node-id": 99}, split(0))(config) == first
    assert first.parent == tmp_path and first.name.startswith("dp-ledger-partition1-")
    assert ledger_place(node, split(1))(config) != first  # other records: another ledger
    with pytest.raises(ValueError, match="ledger directory"):
        ledger_place(node, split(0))({})


def test_a_deployed_holder_keeps_its_ledger_by_its_data_file(tmp_path):
    data = tmp_path / "site.npz"
    data.write_bytes(b"records of one hospital")
    server_says = {DP_LEDGER_DIR_KEY: "/tmp/elsewhere"}  # ignored: a node keeps its own
    path = ledger_place({NODE_DATA_KEY: str(data)}, split(0))(server_says)
    assert path.parent == tmp_path and path.name.startswith("dp-ledger-")
    assert ledger_place({NODE_DATA_KEY: str(data)}, split(5))(server_says) == path  # restart
    own = tmp_path / "ledgers"
    chosen = ledger_place({NODE_DATA_KEY: str(data), NODE_LEDGER_DIR_KEY: str(own)}, split(0))
    assert chosen({}) == own / path.name
    data.write_bytes(b"other records")
    assert ledger_place({NODE_DATA_KEY: str(data)}, split(0))({}) != path


# ---------------------------------------------------------------- preprocessing and sensitivity

PUBLIC = json.dumps({"mean": [1.0, -2.0, 0.5, 3.0], "std": [4.0, 2.0, 1.0, 8.0]})
OPTIONS_RECORD_DP_ALLOWS = {
    "none": DataSpec("table", preprocess="none"),
    "standardize, public statistics": DataSpec("table", preprocess="standardize", stats=PUBLIC),
}


@pytest.fixture(scope="module")
def trainer():
    import keras
    from dpsgd_helpers import small_model

    from fl_app.ml.dpsgd import dpsgd_for

    keras.utils.set_random_seed(0)
    return dpsgd_for(small_model())


def moved_by_removing(trainer, spec: DataSpec, table: np.ndarray, index: int) -> float:
    """How far removing record `index` moves the noiseless sum of clipped gradients, with
    the task's preprocessing done as a holder does it."""
    from dpsgd_helpers import clipped, norm

    labels = np.arange(len(table)) % 3
    full = preprocess(spec, Split(table, labels))[0]
    rest = preprocess(spec, Split(np.delete(table, index, 0), np.delete(labels, index)))[0]
    a = clipped(trainer, full.x, full.y, np.ones(len(table)))
    b = clipped(trainer, rest.x, rest.y, np.ones(len(table) - 1))
    return norm([x - y for x, y in zip(a, b, strict=True)])


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    table=arrays(
        np.float32,
        st.tuples(st.integers(3, 12), st.just(4)),
        elements=st.floats(-100, 100, width=32),
    ),
    index=st.integers(0, 11),
    option=st.sampled_from(sorted(OPTIONS_RECORD_DP_ALLOWS)),
)
def test_removing_any_record_moves_the_clipped_sum_by_at_most_the_bound(
    trainer, table, index, option
):
    from fl_app.ml.dpsgd import ClipAndNoise

    trainer.configure(ClipAndNoise(1.0, 0.0))
    spec = OPTIONS_RECORD_DP_ALLOWS[option]
    assert moved_by_removing(trainer, spec, table, index % len(table)) <= 1.0 * (1 + 1e-4)


def test_a_holders_own_statistics_break_the_bound_which_is_why_they_are_refused(trainer):
    from fl_app.ml.dpsgd import ClipAndNoise

    trainer.configure(ClipAndNoise(1.0, 0.0))
    table = np.random.default_rng(3).normal(size=(36, 4)).astype(np.float32)
    table[0] = 40.0  # an outlier: removing it rescales every other record
    holders_own = DataSpec("table", preprocess="standardize")
    assert moved_by_removing(trainer, holders_own, table, 0) > 1.0


# ---------------------------------------------------------------- refused before round 1

RECORD = ["dp.enabled=true", "dp.level=record"]


def test_record_dp_refuses_a_holders_own_statistics_and_names_both_ways_out():
    with pytest.raises(ConfigError) as refused:
        compose_config([*RECORD, "task=breast_cancer", "task.preprocess_stats=null"])
    message = str(refused.value)
    assert "task.preprocess='standardize' without task.preprocess_stats" in message
    assert "task.preprocess_stats" in message and "task.preprocess=none" in message
    compose_config(["task=breast_cancer", "task.preprocess_stats=null"])  # no DP: allowed


@pytest.mark.parametrize("task", ["breast_cancer", "diabetes", "synthetic", "digits"])
def test_every_bundled_task_runs_under_record_dp(task):
    compose_config([*RECORD, f"task={task}"])


def test_public_statistics_inline_or_from_a_file(tmp_path):
    inline = compose_config(
        [*RECORD, "task=breast_cancer", "task.preprocess_stats={mean: 0, std: 10}"]
    )
    assert inline.task.preprocess_stats == {"mean": 0, "std": 10}
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"mean": 0, "std": 10}))
    compose_config([*RECORD, "task=breast_cancer", f"task.preprocess_stats={stats}"])
    with pytest.raises(ConfigError, match=r"task.preprocess_stats='/nonexistent.json'"):
        compose_config(["task=breast_cancer", "task.preprocess_stats=/nonexistent.json"])
    stats.write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        compose_config(["task=breast_cancer", f"task.preprocess_stats={stats}"])
    with pytest.raises(ConfigError, match="'published' only for the bundled sources"):
        compose_config(["task=digits", "task.preprocess=standardize",
                        "task.preprocess_stats=published"])  # fmt: skip


def test_a_target_epsilon_the_accountant_cannot_calibrate_is_refused():
    with pytest.raises(ConfigError, match=r"dp.target_epsilon=1000000.0 is invalid: .*\[0, 100\]"):
        compose_config([*RECORD, "dp.target_epsilon=1e6"])
