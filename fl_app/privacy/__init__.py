"""Differential privacy: the client-side mechanism and the accountant's report.

Knows no Flower, no Keras and no crypto (an import-linter contract).
"""
