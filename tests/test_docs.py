"""The README's commands are the ones CI and the config actually use."""

from __future__ import annotations

import re
from pathlib import Path

from fl_app.config import compose_config

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text, re.DOTALL)


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = readme_commands()[1]
    assert "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_run_command_simulates_the_configured_number_of_supernodes():
    run_command = readme_commands()[0]
    assert "flwr run ." in run_command
    assert "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1" in run_command
    supernodes = int(re.search(r"num-supernodes=(\d+)", run_command).group(1))
    cpus = int(re.search(r"client-resources-num-cpus=(\d+)", run_command).group(1))
    federation = compose_config().federation
    assert supernodes == federation.num_supernodes
    assert cpus == federation.client_num_cpus
