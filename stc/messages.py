"""Errors as a person reads them: one short line, whichever layer raised them (the model
loader's messages and the app's both go through `one_line`)."""

from __future__ import annotations


def one_line(err: BaseException | str, limit: int = 300) -> str:
    """An error as one short line (no traceback, no newlines): its message with whitespace runs
    as single spaces (the exception's type name when it has none), cut at ``limit`` characters."""
    text = str(err).strip() if not isinstance(err, str) else err.strip()
    if isinstance(err, BaseException) and not text:
        text = type(err).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
