"""Word counting: what a message costs is decided here and nowhere else."""

import re
import unicodedata

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)


def strip_urls(text: str) -> str:
    """Remove http(s):// and www. links; they are never billed as words."""
    return _URL.sub(" ", text)


def _is_word(token: str) -> bool:
    return any(unicodedata.category(ch)[0] in "LN" for ch in token)


def count_words(text: str) -> int:
    """Count whitespace-separated tokens holding at least one Unicode letter or digit.

    URLs are removed first; emoji-only and punctuation-only tokens are not words.
    Counting happens on the raw text, before any HTML escaping.
    """
    return sum(1 for token in strip_urls(text).split() if _is_word(token))
