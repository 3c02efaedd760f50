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
        replaced; the batch always completes. ``workers=0`` runs in this process, with no hard
        limit unless ``timeout`` is given (then one worker process enforces it); see
        :func:`reasonrl.verifiers.batch.verify_many`.
        """
        from reasonrl.verifiers.batch import verify_many

        return verify_many(self, responses, answers, workers=workers, timeout=timeout, progress=progress)

    # Default per-item time limit (seconds) for batch runs; slow verifiers raise it.
    default_timeout: float = 10.0

    # Whether ``answer`` is structured data (a dict or list, as for kk / code / ifeval) rather than
    # a string. Adapters that receive answers as strings (verl's ``ground_truth`` column) decode
    # JSON for such verifiers. None (unknown): JSON objects are decoded, lists and scalars are not.
    structured_answer: bool | None = None


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
    """A configured verifier instance by registered name.

    Every verifier also takes the shared format options (see
    :mod:`reasonrl.verifiers.format_reward`): ``format="logic-rl" | "multiply" | "add"`` wraps the
    verifier so that its reward also depends on the ``<think>…</think><answer>…</answer>`` format,
    with ``format_weight``, ``format_allow_text_outside``, ``format_think_prefilled`` and
    ``format_inner_input`` passed on.
    ``format=None`` (or ``"none"``) leaves it unwrapped.
    """
    _load_builtins()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownVerifierError(f"unknown verifier {name!r}.{hint} Registered: {', '.join(sorted(_REGISTRY))}")
    return build(_REGISTRY[name], name, **options)


# Options every verifier accepts, handled here rather than by each verifier: the format wrapper.
FORMAT_OPTIONS = ("format", "format_weight", "format_allow_text_outside", "format_think_prefilled", "format_inner_input")


def build(factory: Callable[..., Verifier], name: str = "", **options: Any) -> Verifier:
    """Call a verifier factory with ``options``, applying the shared ``format*`` options (see :func:`get`)."""
    format_options = {key: options.pop(key) for key in FORMAT_OPTIONS if key in options}
    verifier = factory(**options)
    if not verifier.name:
        verifier.name = name
    mode = format_options.pop("format", None)
    if mode is None or (isinstance(mode, str) and mode.lower() in ("", "none")) or mode is False:
        if format_options:
            raise ValueError(f"{', '.join(format_options)} given without format=...; valid formats: logic-rl, multiply, add")
        return verifier
    from reasonrl.verifiers.format_reward import MODES, with_format

    if mode not in MODES:
        raise ValueError(f"unknown format {mode!r}; valid formats: {', '.join(MODES)} (or none)")
    return with_format(
        verifier,
        mode=mode,
        format_weight=format_options.get("format_weight"),
        allow_text_outside=bool(format_options.get("format_allow_text_outside", False)),
        think_prefilled=bool(format_options.get("format_think_prefilled", False)),
        inner_input=format_options.get("format_inner_input", "answer_tag"),
    )


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
