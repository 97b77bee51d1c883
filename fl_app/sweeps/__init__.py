"""`fl-experiment` (Hydra multirun of real `flwr run`s) and the sweep summary."""
