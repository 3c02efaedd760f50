"""Procedural problem generators (Knights & Knaves first) and dataset export."""
from reasonrl.data_gen.base import ConfigError, Generator, get, make_config, names, register
from reasonrl.data_gen.dataset import (
    generate_curriculum,
    generate_dataset,
    generate_splits,
    split_rows,
    to_hf_dataset,
)
from reasonrl.data_gen.export import read_rows, write_rows

__all__ = [
    "ConfigError", "Generator", "get", "make_config", "names", "register",
    "generate_dataset", "generate_splits", "generate_curriculum", "split_rows", "to_hf_dataset",
    "read_rows", "write_rows",
]
