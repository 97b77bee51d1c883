"""fl_app's primary Hydra configs (config.yaml for the apps, sweep.yaml for fl-experiment);
their groups are in fl_app/conf, searched after a user app's own conf/."""
