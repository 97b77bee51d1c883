"""What operators run around Flower: provisioning, a local federation, the warm
SuperExec, a private simulation SuperLink, and the process helpers they share.

The apps (fl_app.fl) never import this package (an import-linter contract).
"""
