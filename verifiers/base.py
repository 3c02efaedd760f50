"""The Verifier interface and the verifier registry.

A verifier is a pure function of ``(response, answer)``: it never imports torch and never
touches the network. Concrete verifiers subclass :class:`Verifier` and register with
``@register("name")``; ``get("name", **options)`` returns a configured instance.
"""
from __future__ import annotations

import difflib
import functools
from typing import Any, Callable, Sequence

from reasonrl.types import Verdict


class Verifier:
    """Base class. Subclasses set ``name`` and implement :meth:`verify`.

    Options are keyword arguments of ``__init__`` (for example ``strict=True`` for gsm8k);
    they must be picklable so that batches can run in worker processes.
    """

    name: str = ""

    # The types ``answer`` may have; anything else is a TypeError naming the argument before
    # the verifier runs. The default is every JSON value (a task's answer field as read from
    # JSONL): a string for most tasks, a number for gsm8k, an object or list for kk, code and
    # ifeval. A subclass narrows it to what it reads (gsm8k: str, int, float; kk: str, dict).
    # None passes (verifiers that need no answer, such as format, are called with None).
    answer_types: tuple[type, ...] = (str, int, float, dict, list, tuple)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Every subclass's verify checks its arguments' types, so that verify(18, "18") or a
        # bytes response is one message naming the argument, not an error from deep inside.
        verify = cls.__dict__.get("verify")
        if verify is not None and not getattr(verify, "_checks_argument_types", False):
            cls.verify = _checking_argument_types(verify)

    def verify(self, response: str, answer: Any) -> Verdict:  # pragma: no cover - interface
        """The verdict on ``response`` (the model's text) against ``answer`` (the Problem's field).

        Raises:
            TypeError: ``response`` is not a string (None is read as an empty response), or
                ``answer`` is neither None nor one of :attr:`answer_types` (bytes never are:
                decode first).
        """
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


_MISSING = object()


def _checking_argument_types(verify: Callable[..., Verdict]) -> Callable[..., Verdict]:
    @functools.wraps(verify)
    def checked(self: Verifier, response: Any, *args: Any, **kwargs: Any) -> Verdict:
        answer = args[0] if args else kwargs.get("answer", _MISSING)
        check_argument_types(self, response, answer)
        return verify(self, response, *args, **kwargs)

    checked._checks_argument_types = True  # type: ignore[attr-defined]
    return checked


def check_argument_types(verifier: Verifier, response: Any, answer: Any = _MISSING) -> None:
    """Raise a TypeError naming the argument when ``response``/``answer`` cannot be verified."""
    where = f"verifier {verifier.name or type(verifier).__name__!r}: verify(response, answer)"
    if response is not None and not isinstance(response, str):
        hint = " (decode bytes to str first)" if isinstance(response, (bytes, bytearray)) else ""
        raise TypeError(f"{where}: argument 'response' must be str, got {type(response).__name__} {_short(response)}{hint}")
    allowed = verifier.answer_types
    if answer is _MISSING or answer is None or isinstance(answer, allowed):
        return
    hint = " (decode bytes to str first)" if isinstance(answer, (bytes, bytearray)) else ""
    raise TypeError(
        f"{where}: argument 'answer' must be {' or '.join(t.__name__ for t in allowed)}, "
        f"got {type(answer).__name__} {_short(answer)}{hint}"
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
