"""A failed run's one line: cause and fix, from the error fl_app raised (issue 23, item 4).
End to end through `flwr run`: tests/test_e2e_failures.py."""

from __future__ import annotations

import logging
import re
import sys

import pytest
from runs import refused_start

from fl_app.config import ConfigError
from fl_app.crypto.keys import HEKeyError
from fl_app.fl.failures import (
    PREFIX,
    NoRoundAggregated,
    OneLineFailure,
    RunFailed,
    client_cause,
    fail,
    one_line,
)
from fl_app.ml.checks import DataError
from fl_app.ml.columns import TEXT_HINT
from fl_app.privacy.record_level import BudgetExceeded

CASES = [
    (ConfigError("train.local_epoch is not a parameter of fl_app"), "change that key or value"),
    (DataError("/d/clinic.csv: column 'site_code' holds object values"), "fix the data"),
    (HEKeyError("cannot read HE context /k/public.ctx"), "point he.public_context"),
    (BudgetExceeded("ε=3.2 would be past dp.max_epsilon=3"), "raise dp.target_epsilon"),
    (NoRoundAggregated("no round aggregated in 2 round(s)"), "see each dropped client's"),
]


@pytest.mark.parametrize(("err", "fix"), CASES, ids=lambda c: type(c).__name__)
def test_each_known_failure_is_one_line_with_its_cause_and_fix(err, fix):
    line = one_line(err)
    cause, _, advice = line.partition(" — ")
    assert "\n" not in line
    assert cause == f"{type(err).__name__}: {err}" and advice.startswith(fix)


def test_a_multi_line_message_keeps_its_first_paragraph_on_one_line():
    err = ConfigError("Could not find 'strategy/foo'\nAvailable: fedavg\n\nConfig search path: x")
    assert one_line(err).startswith(
        "ConfigError: Could not find 'strategy/foo' Available: fedavg —"
    )


def test_the_clients_known_cause_is_found_in_flowers_error_reason():
    """A ClientApp's exception reaches the server as Flower's reason string."""
    reason = (
        "client 7: <class 'flwr.client.client_app.ClientAppException'>:<'\nException "
        "ClientAppException occurred. Message: ...\\n    raise BudgetExceeded(\\n"
        "fl_app.privacy.record_level.BudgetExceeded: holder ab12: ε=0.9 would be past "
        "dp.max_epsilon=0.01; refusing to train\\n\\nThe above exception was'>"
    )
    cause = client_cause([reason, reason, "client 3: timed out"])
    assert cause == (
        "BudgetExceeded: holder ab12: ε=0.9 would be past dp.max_epsilon=0.01; refusing to train"
    )
    assert client_cause(["client 3: timed out"]) is None


def test_the_traceback_goes_to_a_private_file_named_in_the_line(tmp_path):
    try:
        raise DataError("/d/x.csv: no rows")
    except DataError as err:
        failure = fail(err, tmp_path / "failed", run_id=42)
    path = tmp_path / "failed" / "run42.log"
    assert str(failure).endswith(f"(traceback: {path})")
    assert "Traceback (most recent call last)" in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600


def flower_records(keep_traceback: bool) -> list[logging.LogRecord]:
    """What Flower logs when a ServerApp raised RunFailed, through the filter."""
    line_filter = OneLineFailure(keep_traceback)
    try:
        raise RunFailed("DataError: /d/x.csv: no rows — fix the data")
    except RunFailed:
        exc_info = sys.exc_info()
    records = [
        logging.LogRecord(
            "flwr", logging.ERROR, "f", 1, "%s raised an exception", ("ServerApp",), exc_info
        ),
        logging.LogRecord("flwr", logging.ERROR, "f", 2, "Exit Code: 700\nmore", (), None),
    ]
    return [record for record in records if line_filter.filter(record)]


def test_flowers_traceback_record_becomes_the_last_line():
    records = flower_records(keep_traceback=False)
    assert len(records) == 1  # Flower's generic exit report is left out
    assert records[0].getMessage() == PREFIX + "DataError: /d/x.csv: no rows — fix the data"
    assert records[0].exc_info is None


def test_at_debug_the_traceback_stays_in_the_log():
    (record,) = flower_records(keep_traceback=True)
    assert record.getMessage().startswith(PREFIX) and record.exc_info is not None


def test_an_unknown_failure_keeps_flowers_full_report():
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("flwr", logging.ERROR, "f", 1, "raised", (), exc_info)
    assert OneLineFailure(False).filter(record) and record.exc_info is not None


def test_the_server_app_turns_a_bad_config_key_into_the_line_before_any_training(tmp_path):
    failure = refused_start(tmp_path / "out", "he", "train.local_epoch=2")
    assert re.search(r"did you mean 'train\.local_epochs'\? — change", str(failure))


def test_model_args_that_do_not_fit_the_builder_are_a_task_error_naming_both():
    """A bundled model on a file source needs its input shape: said before it is called."""
    from fl_app.ml.checks import TaskError
    from fl_app.ml.models import build_model

    with pytest.raises(TaskError) as caught:
        build_model("mlp", model_args={"outputs": 1}, objective=None, optimizer="adam",
                    learning_rate=0.1, seed=1)  # fmt: skip
    assert str(caught.value) == (
        "task.model_args={'outputs': 1} do not fit task.model='mlp' (input_shape, outputs, "
        "name='mlp', hidden=(32, 16)): missing a required argument: 'input_shape'"
    )
    assert one_line(caught.value).endswith("— fix the task's model (task.model, task.model_args)")


def start_server(tmp_path, overrides: str) -> str:
    """The ServerApp's main until it refuses (before it would use the Grid): its line."""
    return str(refused_start(tmp_path / "out", "he", overrides, output_root=tmp_path))


def test_a_data_file_the_server_cannot_read_fails_in_one_line_before_any_write(tmp_path):
    """The issue's user: a string column, read only after scrolling a traceback."""
    table = tmp_path / "clinic_str.csv"
    table.write_text("age,site_code,y\n" + "".join(f"{i},s{i % 3},{i % 2}\n" for i in range(40)))
    source = f"task.source=fl_app.ml.sources.table task.source_args={{path:{table},target:y}}"
    line = start_server(tmp_path, f"task=breast_cancer {source} task.preprocess_stats=null")
    log = tmp_path / "failed" / "run7.log"
    assert line == (
        f"DataError: {table}: column 'site_code' holds object values; allowed numbers"
        f"{TEXT_HINT} — fix the data the task reads (task.source, task.source_args) "
        f"(traceback: {log})"
    )
    assert not (tmp_path / "out").exists()  # read before keys or anything else is written


def test_a_missing_key_file_fails_in_one_line_before_any_write(tmp_path):
    line = start_server(tmp_path, "he.public_context=/nonexistent/public.ctx")
    assert line.startswith("HEKeyError: cannot read HE context /nonexistent/public.ctx")
    assert " — point he.public_context/he.secret_context at keys `fl-app keygen` made" in line
    assert not (tmp_path / "out").exists()
