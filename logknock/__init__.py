"""logknock: a port-knock daemon that reads kernel firewall log lines."""

__version__ = "0.1.0"
