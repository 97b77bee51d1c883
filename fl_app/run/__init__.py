"""What one run leaves behind: its history, checkpoints, state and output files.

Knows no Flower (an import-linter contract): arrays and plain values only.
"""
