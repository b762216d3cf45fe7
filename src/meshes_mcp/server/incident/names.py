"""Near-miss event names: the same name written another way (case, separators, tense, a typo).

`user.signed_up` and `user.signup` are one name to a person and two to Meshes, whose rules match event
names exactly. Names are compared twice: by their skeleton (lower case, no separators, each word without
a past-tense or plural ending), and by `difflib`'s similarity of the squashed names for typos.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from difflib import SequenceMatcher

NEAR = 0.85  # squashed-name similarity from which two names are a typo apart (`user.sigup` ~ `user.signup`)
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_ENDINGS = ("ing", "ed", "es", "s", "d")


def words(name: str) -> list[str]:
    """`User.SignedUp`, `user_signed-up` → ["user", "signed", "up"] (camelCase splits too)."""
    return [word.lower() for word in _WORDS.findall(name)]


def squashed(name: str) -> str:
    return "".join(words(name))


def stem(word: str) -> str:
    for ending in _ENDINGS:
        if len(word) > len(ending) + 2 and word.endswith(ending):
            return word[: -len(ending)]
    return word


def skeleton(name: str) -> str:
    return "".join(stem(word) for word in words(name))


def similarity(a: str, b: str) -> float:
    """0 to 1: 1 when the names differ only by case, separators or tense; else difflib's ratio."""
    if a == b or skeleton(a) == skeleton(b):
        return 1.0
    return SequenceMatcher(None, squashed(a), squashed(b), autojunk=False).ratio()


def is_near_miss(a: str, b: str) -> bool:
    """Two different names a person would take for one."""
    return a != b and similarity(a, b) >= NEAR


def near_misses(name: str, candidates: Iterable[str]) -> list[str]:
    """The candidates that are near misses of `name`, closest first."""
    return sorted({c for c in candidates if is_near_miss(name, c)}, key=lambda c: (-similarity(name, c), c))


def closest_first(name: str, candidates: Iterable[str]) -> list[str]:
    """Every candidate, the most similar to `name` first."""
    return sorted(set(candidates), key=lambda c: (-similarity(name, c), c))
