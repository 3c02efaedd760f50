"""The Verifier interface and the verifier registry.

A verifier is a pure function of ``(response, answer)``: it never imports torch and never
touches the network. Concrete verifiers subclass :class:`Verifier` and register with
``@register("name")``; ``get("name", **options)`` returns a configured instance.
"""
from __future__ import annotations

import difflib
from typing import Any, Callable, Sequence

from reasonrl.types import Verdict


class Verifier:
    """Base class. Subclasses set ``name`` and implement :meth:`verify`.

    Options are keyword arguments of ``__init__`` (for example ``strict=True`` for gsm8k);
    they must be picklable so that batches can run in worker processes.
    """

    name: str = ""

    def verify(self, response: str, answer: Any) -> Verdict:  # pragma: no cover - interface
        raise NotImplementedError

    def verify_batch(
        self,
        responses: Sequence[str],
        answers: Sequence[Any],
        workers: int | None = None,
        timeout: float | None = None,
        progress: bool = False,
    ) -> list[Verdict]:
        """Verify many pairs across worker processes, each item under a hard time limit.

        A timed-out or crashed item gets a ``timeout``/``error`` verdict and its worker is
        replaced; the batch always completes. ``workers=0`` runs in this process (still with
        a per-item limit).
        """
        from reasonrl.verifiers.batch import verify_many

        return verify_many(self, responses, answers, workers=workers, timeout=timeout, progress=progress)

    # Default per-item time limit (seconds) for batch runs; slow verifiers raise it.
    default_timeout: float = 10.0


_REGISTRY: dict[str, Callable[..., Verifier]] = {}


class UnknownVerifierError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


def register(name: str) -> Callable[[Callable[..., Verifier]], Callable[..., Verifier]]:
    """Class decorator (or factory decorator): ``@register("gsm8k") class Gsm8kVerifier(Verifier): ...``."""

    def decorator(factory: Callable[..., Verifier]) -> Callable[..., Verifier]:
        _REGISTRY[name] = factory
        if isinstance(factory, type) and not getattr(factory, "name", ""):
            factory.name = name
        return factory

    return decorator


def get(name: str, **options: Any) -> Verifier:
    """A configured verifier instance by registered name."""
    _load_builtins()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownVerifierError(f"unknown verifier {name!r}.{hint} Registered: {', '.join(sorted(_REGISTRY))}")
    verifier = _REGISTRY[name](**options)
    if not verifier.name:
        verifier.name = name
    return verifier


def names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


_BUILTIN_MODULES = (
    "reasonrl.verifiers.math_exact",
    "reasonrl.verifiers.math_flex",
    "reasonrl.verifiers.knights_knaves",
    "reasonrl.verifiers.ifeval",
    "reasonrl.verifiers.code",
    "reasonrl.verifiers.format_reward",
    "reasonrl.verifiers.puzzles",
)
_loaded = False


def _load_builtins() -> None:
    """Import the built-in verifier modules once (they register themselves)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # Only tolerate the module itself being absent (a partial checkout), never a broken import inside it.
            if exc.name != module:
                raise
