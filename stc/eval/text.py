"""Option letters and the text normalisation that the manifest, the prompts and the answer
parser share: option i is letter LETTERS[i], and texts compare after `norm`."""

from __future__ import annotations

import re

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def norm(text: str) -> str:
    """Lower case, punctuation as spaces, single spaces: how option texts are compared."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())
