"""Where the daemon's configuration is, unless `--config` says otherwise.

A module of its own so that a command can name it in its `--help` without
importing the configuration loader (and YAML) at start-up.
"""

DEFAULT_PATH = "/etc/logknock/logknock.yaml"
