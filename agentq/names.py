"""Agent names: the one rule of what a name may be, when two names are the same (in any
case, in any script) and how `@mentions` find them.

A name is an @mention, so it is one word: a letter of any script first, then letters,
combining marks, digits, `_`, `.` or `-` ("Zoë", "助手", "Ólafur-2", "नमस्ते"), at most
MAX_LENGTH characters, stored in Unicode NFC. Two names are the same when their `key`s
are: NFC and Unicode case folding, computed here, never by a database's `lower()` (which
is ASCII-only on SQLite and depends on the locale on PostgreSQL).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection

from agentq.errors import InvalidInput

#: the longest name, in characters (after NFC)
MAX_LENGTH = 100
#: what a name may hold besides letters, combining marks and digits
PUNCTUATION = frozenset("_.-")
#: what the rule says, in the words of its errors
RULE = (
    f"one word of 1 to {MAX_LENGTH} characters: a letter first, then letters, digits, "
    "_ . or - (letters and digits of any script; no spaces or other signs)"
)
#: how much of a refused name an error quotes
SHOWN = 40


def _shown(name: str) -> str:
    return repr(name if len(name) <= SHOWN else name[:SHOWN] + "…")


def _letter(ch: str) -> bool:
    return unicodedata.category(ch).startswith("L")


def _inner(ch: str) -> bool:
    """Whether `ch` may stand after a name's first character."""
    category = unicodedata.category(ch)
    return category[0] in "LM" or category == "Nd" or ch in PUNCTUATION


def check(name: object, field: str = "name") -> str:
    """`name` in NFC if it is a valid agent name, else InvalidInput naming `field`."""
    if not isinstance(name, str):
        raise InvalidInput(field, f"must be a string: {RULE}")
    normal = unicodedata.normalize("NFC", name)
    if not normal or len(normal) > MAX_LENGTH:
        raise InvalidInput(field, f"{_shown(name)} is {len(normal)} characters; a name is {RULE}")
    bad = next((ch for ch in normal[1:] if not _inner(ch)), None)
    if not _letter(normal[0]) or bad is not None:
        what = f"{bad!r} is not allowed" if bad is not None else "does not start with a letter"
        raise InvalidInput(field, f"{_shown(name)}: {what}; a name is {RULE}")
    return normal


def key(name: str) -> str:
    """What makes two names the same: NFC, case-folded ("Zoë", "ZOË", "zoe\u0308" are one)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def mentioned(text: str, names: Collection[str]) -> list[str]:
    """The keys among `names` (keys, see `key`) that `text` @mentions, in order, once
    each. A mention runs as far as a name's characters do; one that ends in `.`, `-` or
    `_` stands for the name without them when no name has them (`@Zoë.` ends a sentence).
    """
    text = unicodedata.normalize("NFC", text)
    found: dict[str, None] = {}
    at = text.find("@")
    while at != -1:
        end = at + 1
        if end < len(text) and _letter(text[end]):
            end += 1
            while end < len(text) and _inner(text[end]):
                end += 1
            word = key(text[at + 1 : end])
            for candidate in (word, word.rstrip("".join(PUNCTUATION))):
                if candidate in names:
                    found.setdefault(candidate)
                    break
        at = text.find("@", end)
    return list(found)
