"""Answer extraction helpers shared by verifiers (pure string functions, no heavy imports)."""
from __future__ import annotations

import re

_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_tag(text: str, tag: str = "answer") -> str | None:
    """Content of the LAST ``<tag>...</tag>`` pair (stripped), or None when there is none."""
    close = f"</{tag}>"
    end = text.rfind(close)
    if end < 0:
        return None
    start = text.rfind(f"<{tag}>", 0, end)
    if start < 0:
        return None
    return text[start + len(tag) + 2 : end].strip()


def extract_last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), with balanced braces, or None.

    Also accepts the brace-less form ``\\boxed 5``. Scans backwards so a 1 MB response costs one pass.
    """
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    i = idx + (6 if text.startswith("\\boxed", idx) else 5)
    while i < len(text) and text[i] == " ":
        i += 1
    if i < len(text) and text[i] != "{":
        m = re.match(r"([^\s$]+)", text[i:])
        return m.group(1) if m else None
    depth = 0
    for j in range(i, len(text)):
        ch = text[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None  # unbalanced


def extract_last_code_block(text: str, languages: tuple[str, ...] = ("python", "py", "python3", "")) -> str | None:
    """The last fenced code block whose language tag is in ``languages`` (``""`` = untagged), or None."""
    blocks = [body for lang, body in _FENCE_RE.findall(text) if lang.lower() in languages]
    return blocks[-1] if blocks else None
