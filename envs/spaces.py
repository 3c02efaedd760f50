"""Gymnasium spaces for language environments: arbitrary Unicode text and chat messages.

Gymnasium's :class:`gymnasium.spaces.Text` draws from a fixed character set (alphanumeric by
default), so it rejects an ordinary prompt such as ``Q: 1+1=?`` or any non-ASCII answer. The
two spaces here accept any valid Unicode string (every code point except the lone surrogates,
which cannot be encoded as UTF-8 and so cannot be written to JSONL or sent to a tokenizer):

* :class:`UnicodeText` — the action space of every reasonrl env: one response string.
* :class:`ChatMessages` — the observation space: the conversation so far as a list of
  ``{"role": str, "content": str}`` dicts (the Problem ``prompt`` format).

Both sample reproducibly from their ``np_random`` (``space.seed(s)``), so
``gymnasium.utils.env_checker.check_env`` can drive an env with random "responses".

>>> space = UnicodeText(max_length=100)
>>> "Q: 1+1=? → 2 ✓" in space
True
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from gymnasium.spaces import Space

# Code points sampled from: printable ASCII most of the time (responses look like text), the
# rest from all of Unicode minus the surrogate block. Sampling never emits a lone surrogate.
_SURROGATES = (0xD800, 0xDFFF)
_MAX_CODE_POINT = 0x10FFFF
_ASCII_SHARE = 0.7


def _is_valid_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")  # fails exactly on lone surrogates
    except UnicodeEncodeError:
        return False
    return True


class UnicodeText(Space[str]):
    """Any Unicode string with ``min_length <= len(s) <= max_length`` (lengths in code points).

    Args:
        max_length: longest string in the space (``None``: no limit).
        min_length: shortest string in the space.
        sample_max_length: longest string :meth:`sample` draws (samples stay small even when
            ``max_length`` is large or unlimited).
        seed: seed for :meth:`sample`.
    """

    def __init__(
        self,
        max_length: int | None = None,
        *,
        min_length: int = 0,
        sample_max_length: int = 64,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if min_length < 0:
            raise ValueError(f"min_length must be >= 0, got {min_length}")
        if max_length is not None and max_length < min_length:
            raise ValueError(f"max_length ({max_length}) must be >= min_length ({min_length})")
        self.min_length = int(min_length)
        self.max_length = None if max_length is None else int(max_length)
        self.sample_max_length = int(sample_max_length)
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def contains(self, x: Any) -> bool:
        if not _is_valid_text(x):
            return False
        return len(x) >= self.min_length and (self.max_length is None or len(x) <= self.max_length)

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random string; ``mask``/``probability`` are not supported (no finite charset)."""
        if mask is not None or probability is not None:
            raise NotImplementedError("UnicodeText.sample does not take a mask or probability")
        upper = self.sample_max_length if self.max_length is None else min(self.max_length, self.sample_max_length)
        upper = max(upper, self.min_length)
        length = int(self.np_random.integers(self.min_length, upper + 1))
        return sample_unicode(self.np_random, length)

    def __repr__(self) -> str:
        return f"UnicodeText(min_length={self.min_length}, max_length={self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, UnicodeText)
            and other.min_length == self.min_length
            and other.max_length == self.max_length
        )

    def to_jsonable(self, sample_n: Sequence[str]) -> list[str]:
        return list(sample_n)

    def from_jsonable(self, sample_n: Sequence[str]) -> list[str]:
        return list(sample_n)


def sample_unicode(rng: np.random.Generator, length: int) -> str:
    """``length`` random code points: mostly printable ASCII, otherwise any non-surrogate."""
    chars = []
    for _ in range(length):
        if rng.random() < _ASCII_SHARE:
            chars.append(chr(int(rng.integers(0x20, 0x7F))))
            continue
        # Draw from [0, MAX - surrogate count] and skip over the surrogate block.
        code = int(rng.integers(0, _MAX_CODE_POINT + 1 - (_SURROGATES[1] - _SURROGATES[0] + 1)))
        if code >= _SURROGATES[0]:
            code += _SURROGATES[1] - _SURROGATES[0] + 1
        chars.append(chr(code))
    return "".join(chars)


DEFAULT_ROLES = ("system", "user", "assistant", "tool")


class ChatMessages(Space[list]):
    """A conversation: a list of ``{"role": str, "content": str}`` dicts.

    Args:
        roles: allowed role names.
        max_messages: most messages in a conversation (``None``: no limit).
        max_content_length: longest message content in code points (``None``: no limit).
        min_messages: fewest messages.
        sample_max_messages / sample_max_content_length: bounds for :meth:`sample`.
        seed: seed for :meth:`sample`.

    Extra keys in a message (``name``, ``tool_call_id``...) are allowed; ``role`` and
    ``content`` are required and must be strings.
    """

    def __init__(
        self,
        roles: Sequence[str] = DEFAULT_ROLES,
        *,
        max_messages: int | None = None,
        max_content_length: int | None = None,
        min_messages: int = 1,
        sample_max_messages: int = 4,
        sample_max_content_length: int = 64,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if not roles:
            raise ValueError("roles must not be empty")
        self.roles = tuple(roles)
        self.max_messages = max_messages
        self.min_messages = int(min_messages)
        self.max_content_length = max_content_length
        self.sample_max_messages = int(sample_max_messages)
        self._content = UnicodeText(max_content_length, sample_max_length=sample_max_content_length)
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def seed(self, seed: int | None = None) -> int | list[int]:
        seeds = super().seed(seed)
        # Derive the content space's seed from ours so that one seed fixes the whole sample.
        self._content.seed(int(self.np_random.integers(0, 2**31 - 1)))
        return seeds

    def contains(self, x: Any) -> bool:
        if not isinstance(x, list) or len(x) < self.min_messages:
            return False
        if self.max_messages is not None and len(x) > self.max_messages:
            return False
        for message in x:
            if not isinstance(message, dict):
                return False
            if message.get("role") not in self.roles or message.get("content") not in self._content:
                return False
        return True

    def sample(self, mask: Any = None, probability: Any = None) -> list[dict[str, str]]:
        if mask is not None or probability is not None:
            raise NotImplementedError("ChatMessages.sample does not take a mask or probability")
        upper = self.sample_max_messages if self.max_messages is None else min(self.max_messages, self.sample_max_messages)
        count = int(self.np_random.integers(self.min_messages, max(upper, self.min_messages) + 1))
        return [
            {"role": self.roles[int(self.np_random.integers(len(self.roles)))], "content": self._content.sample()}
            for _ in range(count)
        ]

    def __repr__(self) -> str:
        return (
            f"ChatMessages(roles={self.roles}, max_messages={self.max_messages}, "
            f"max_content_length={self.max_content_length})"
        )

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, ChatMessages)
            and other.roles == self.roles
            and other.max_messages == self.max_messages
            and other.min_messages == self.min_messages
            and other.max_content_length == self.max_content_length
        )

    def to_jsonable(self, sample_n: Sequence[list]) -> list[list]:
        return [list(map(dict, conversation)) for conversation in sample_n]

    def from_jsonable(self, sample_n: Sequence[list]) -> list[list]:
        return [list(map(dict, conversation)) for conversation in sample_n]
