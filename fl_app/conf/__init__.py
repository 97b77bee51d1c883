"""fl_app's bundled Hydra config groups (package data, composed as pkg://fl_app.conf)."""
