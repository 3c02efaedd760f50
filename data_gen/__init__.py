"""Procedural problem generators (Knights & Knaves first) and dataset export."""
from reasonrl.data_gen.base import ConfigError, Generator, get, make_config, names, register

__all__ = ["ConfigError", "Generator", "get", "make_config", "names", "register"]
