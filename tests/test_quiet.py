"""log_level: the frameworks' start-up chatter is dropped, real warnings and errors kept."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from fl_app import quiet
from fl_app.config.validate import LOG_LEVELS

# Lines as this machine's TensorFlow, CUDA stub and Ray print them (see the issue).
CHATTER = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796139341.640929   32229 port.cc:153] oneDNN custom operations are on. "
    "You may see slightly different numerical results due to floating-point round-off",
    "\x1b[36m(pid=32229)\x1b[0m I0000 00:00:1796139341.641914   32229 cudart_stub.cc:31] "
    "Could not find cuda drivers on your machine, GPU will not be used.",
    "I0000 00:00:1796139341.681825   32229 cpu_feature_guard.cc:227] This TensorFlow binary "
    "is optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.",
    "(ClientAppActor pid=32229) E0000 00:00:1796139345.666840   32229 cuda_platform.cc:52] "
    "failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
]
REAL = [
    "WARNING :   round 2 fit: dropped client 3 rejected: the payload does not deserialise",
    "E0000 00:00:1796139345.666840   32229 op_kernel.cc:1800] OP_REQUIRES failed: OOM",
    "Traceback (most recent call last):",
    "ValueError: task.model='mine' returned a model without weights",
    "/x/ray/_private/worker.py:2051: UserWarning: something real",
]


@pytest.fixture
def level():
    """Set a level for one test, and the default back afterwards."""
    yield lambda name: quiet.setup(name)
    quiet.setup("info")


def test_the_levels_are_the_configs():
    assert quiet.LEVELS == LOG_LEVELS


@pytest.mark.parametrize("line", CHATTER)
def test_start_up_chatter_is_recognised(line):
    assert quiet.is_chatter(line)


@pytest.mark.parametrize("line", REAL)
def test_warnings_errors_and_tracebacks_are_not_chatter(line):
    assert not quiet.is_chatter(line)


def test_the_line_filter_passes_everything_but_chatter(level):
    level("info")
    out = io.StringIO()
    stream = quiet.LineFilter(out)
    for line in [*CHATTER, *REAL]:
        stream.write(line[:10])  # a line may come in pieces
        stream.write(line[10:] + "\n")
    stream.write("no newline yet")
    assert out.getvalue() == "".join(f"{line}\n" for line in REAL)
    stream.flush()
    assert out.getvalue().endswith("no newline yet")


def test_at_debug_the_line_filter_drops_nothing(level):
    level("debug")
    out = io.StringIO()
    quiet.LineFilter(out).write("".join(f"{line}\n" for line in CHATTER))
    assert out.getvalue().count("\n") == len(CHATTER)


def test_retracing_notices_and_flower_stage_lines_only_at_debug(level, caplog):
    retracing = "5 out of the last 5 calls to <function f> triggered tf.function retracing."
    for name, shown in (("info", False), ("debug", True)):
        level(name)
        caplog.clear()
        with caplog.at_level(logging.INFO):
            logging.getLogger("tensorflow").warning(retracing)
            logging.getLogger("tensorflow").warning("a real TensorFlow warning")
            flwr = logging.getLogger("flwr")
            flwr.info("configure_fit: strategy sampled %s clients (out of %s)", 10, 10)
            flwr.info("[ROUND %s]", 2)
            flwr.warning("%s", "a real Flower warning")
        messages = [r.getMessage() for r in caplog.records]
        assert "a real TensorFlow warning" in messages
        assert "a real Flower warning" in messages
        assert (retracing in messages) is shown
        assert ("[ROUND 2]" in messages) is shown


def test_an_unknown_level_names_the_key_and_the_allowed_ones():
    with pytest.raises(ValueError, match=r"log_level='loud' is invalid: allowed one of"):
        quiet.setup("loud")


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    )


def test_the_apps_import_no_tensorflow_before_the_level_is_known():
    """TensorFlow reads its log level once, at import: the ServerApp and ClientApp
    modules (what Flower loads first) must leave the import to `quiet.setup`."""
    result = run_python(
        """
        import sys
        import fl_app.quiet, fl_app.server_app, fl_app.client_app, fl_app.cli
        print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
        """
    )
    assert result.stdout.strip() == "[]"


def test_tensorflow_starts_quietly_and_real_errors_still_show():
    """A real TensorFlow start-up: at info none of its chatter, at debug all of it; in
    both, what the process writes to stderr afterwards (a warning, an error) shows."""
    code = """
        import logging, sys, warnings
        from fl_app import quiet
        quiet.setup("{level}", tensorflow=True)
        import tensorflow as tf
        tf.reduce_sum(tf.ones(3)).numpy()
        warnings.warn("a real warning")
        logging.getLogger("fl_app").error("a real error")
        print("done", file=sys.stderr)
    """
    quiet_run = run_python(code.format(level="info")).stderr
    loud_run = run_python(code.format(level="debug")).stderr
    for stderr in (quiet_run, loud_run):
        assert "UserWarning: a real warning" in stderr
        assert "a real error" in stderr and stderr.rstrip().endswith("done")
    assert not [line for line in quiet_run.splitlines() if quiet.is_chatter(line)]
    assert [line for line in loud_run.splitlines() if quiet.is_chatter(line)]


def test_debug_takes_back_what_info_set_in_the_environment(level, monkeypatch):
    """The ServerApp sets info up before it reads the run's level: debug must leave
    TensorFlow's C++ log level as the user had it."""
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "DEBUG")  # the user's own
    quiet._Quiet.done = ("", False)
    level("info")
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
    level("debug")
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    assert os.environ["MLFLOW_LOGGING_LEVEL"] == "DEBUG"
