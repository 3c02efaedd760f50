"""The Generator interface and the generator registry.

A generator is one module: a frozen config dataclass whose fields are the difficulty knobs
(validated in ``__post_init__``), a deterministic ``generate(seed) -> Problem``, the name of
its verifier, and one registration line::

    @register("kk")
    class KnightsKnavesGenerator(Generator):
        Config = KnightsKnavesConfig
        verifier = "kk"
        def generate(self, seed): ...

Every Problem a generator makes carries ``metadata["worked_solution"]``: a short correct
solution text ending in the answer in the format the prompt asks for (used for SFT warm-up),
where the family can produce one cheaply.

The contract test (``tests/test_contract.py``) walks every registered task and needs, for a
generated problem, one response that must score 1 and some that must score 0. Two optional
methods supply them (defaults below; override them when the family knows better):

* ``oracle_response(problem) -> str``: a response the verifier must accept with reward 1.
  Default: ``metadata["worked_solution"]``.
* ``near_miss_responses(problem) -> list[str]``: responses in the right format that are
  *almost* right (off by one, a swapped pair, a missing item, a number that was not given)
  and must score 0. Default: ``[]``, and the contract test falls back to perturbing the
  oracle's final answer (the last number off by one, the last knight/knave flipped).
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable, ClassVar


class Generator:
    """Base class for procedural problem generators."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = type(None)
    verifier: ClassVar[str] = ""  # registered verifier name
    # True when generate() derives each Problem id from canonical() (e.g. "kk-<hash>"): dataset
    # deduplication may then compare ids instead of recomputing canonical forms.
    canonical_ids: ClassVar[bool] = False

    def __init__(self, config: Any = None, **difficulty: Any) -> None:
        if config is None:
            config = make_config(self.Config, difficulty, owner=self.name)
        elif difficulty:
            config = dataclasses.replace(config, **difficulty)
        self.config = config

    def generate(self, seed: int) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def oracle_response(self, problem: dict[str, Any]) -> str | None:
        """A response that scores 1 on ``problem`` (the contract test's oracle); None when unknown."""
        return (problem.get("metadata") or {}).get("worked_solution")

    def near_miss_responses(self, problem: dict[str, Any]) -> list[str]:
        """Well-formed, almost-right responses that must score 0 (off by one, swapped pair, missing item)."""
        return []

    def canonical(self, problem: dict[str, Any]) -> str:
        """A string that is equal for two problems exactly when they are the same puzzle.

        Used to deduplicate datasets and to keep train and test splits disjoint. The default
        is the prompt text plus the answer; generators override it with a form that ignores
        surface variation (names, phrasing), e.g. K&K uses the statement trees.
        """
        import json

        return json.dumps([problem.get("prompt"), problem.get("answer")], sort_keys=True, ensure_ascii=False)


class ConfigError(ValueError):
    """A difficulty knob or config value is invalid; the message names the key and the valid choices."""


def make_config(config_cls: type, values: dict[str, Any], owner: str = "") -> Any:
    """Build a frozen config from ``values``, rejecting unknown keys with close matches."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(
                f"unknown difficulty key {key!r} for {owner or config_cls.__name__}{hint}; valid keys: {', '.join(fields)}"
            )
    return config_cls(**{k: _coerce(v, fields[k]) for k, v in values.items()})


def _coerce(value: Any, field: dataclasses.Field) -> Any:
    """Turn CLI strings (``people=4``) into the field's type when the default says what it is."""
    if not isinstance(value, str):
        return value
    default = field.default
    try:
        if isinstance(default, bool):
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
            raise ConfigError(f"{field.name}: expected true/false, got {value!r}")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            return tuple(v.strip() for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{field.name}: expected {type(default).__name__}, got {value!r}") from None
    return value


_REGISTRY: dict[str, type[Generator]] = {}


def register(name: str) -> Callable[[type[Generator]], type[Generator]]:
    def decorator(cls: type[Generator]) -> type[Generator]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def get(name: str, config: Any = None, **difficulty: Any) -> Generator:
    _load_builtins()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown generator {name!r}.{hint} Registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](config, **difficulty)


def names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


_BUILTIN_MODULES = (
    "reasonrl.data_gen.knights_knaves",
    "reasonrl.data_gen.arithmetic",
    "reasonrl.data_gen.countdown",
    "reasonrl.data_gen.graph_coloring",
)
_loaded = False


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
