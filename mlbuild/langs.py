"""Language codes: one form inside (ISO 639-3 + ISO 15924 script, e.g. ``kir_Cyrl``).

Recipes may say ``ky``, ``kir``, ``kir_Cyrl`` or ``ky-Cyrl``; :func:`normalize` turns each into
``kir_Cyrl``. :func:`hub_code` gives the code the Hugging Face Hub expects in a card (ISO 639-1
when there is one, else 639-3). :func:`script_of_text` finds the dominant script of a text.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_FORM = re.compile(r"^([A-Za-z]{2,3})(?:[_-]([A-Za-z]{4}))?$")

# Scripts we can check in text, with the Unicode-name prefixes that identify them.
_SCRIPT_PREFIX = {
    "LATIN": "Latn",
    "CYRILLIC": "Cyrl",
    "ARABIC": "Arab",
    "GREEK": "Grek",
    "HEBREW": "Hebr",
    "DEVANAGARI": "Deva",
    "BENGALI": "Beng",
    "GEORGIAN": "Geor",
    "ARMENIAN": "Armn",
    "THAI": "Thai",
    "HANGUL": "Hang",
    "HIRAGANA": "Jpan",
    "KATAKANA": "Jpan",
    "CJK": "Hani",
    "ETHIOPIC": "Ethi",
    "TAMIL": "Taml",
    "TELUGU": "Telu",
    "KANNADA": "Knda",
    "MALAYALAM": "Mlym",
    "GUJARATI": "Gujr",
    "GURMUKHI": "Guru",
    "SINHALA": "Sinh",
    "KHMER": "Khmr",
    "LAO": "Laoo",
    "MYANMAR": "Mymr",
    "TIBETAN": "Tibt",
    "MONGOLIAN": "Mong",
}


class UnknownLanguage(ValueError):
    pass


@lru_cache(maxsize=4096)
def normalize(code: str) -> str:
    """Return the internal form ``xxx_Scrp`` of a language code, or raise :class:`UnknownLanguage`."""
    import langcodes

    if not isinstance(code, str):
        raise UnknownLanguage(f"language code must be a string, got {code!r}")
    m = _FORM.match(code.strip())
    if not m:
        raise UnknownLanguage(f"unknown language code {code!r} (expected forms like 'ky', 'kir' or 'kir_Cyrl')")
    lang, script = m.group(1).lower(), m.group(2)
    try:
        tag = langcodes.Language.get(lang)
    except (langcodes.LanguageTagError, ValueError) as e:
        raise UnknownLanguage(f"unknown language code {code!r}") from e
    if not tag.is_valid():
        raise UnknownLanguage(f"unknown language code {code!r}")
    try:
        alpha3 = tag.to_alpha3()
    except LookupError as e:
        raise UnknownLanguage(f"unknown language code {code!r}") from e
    if len(lang) == 3 and alpha3 != lang:
        # keep a valid ISO 639-3 code the user wrote (e.g. 'swh' stays 'swh', not macro 'swa')
        alpha3 = lang
    if script:
        script = script.title()
    else:
        script = tag.maximize().script or "Zyyy"
    return f"{alpha3}_{script}"


def is_valid(code: str) -> bool:
    try:
        normalize(code)
        return True
    except UnknownLanguage:
        return False


@lru_cache(maxsize=4096)
def hub_code(code: str) -> str:
    """The code a Hub card's ``language:`` list expects (ISO 639-1 when it exists)."""
    import langcodes

    lang = normalize(code).split("_")[0]
    return langcodes.Language.get(lang).language or lang


def script(code: str) -> str:
    return normalize(code).split("_")[1]


@lru_cache(maxsize=65536)
def _char_script(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    head = name.split(" ", 1)[0]
    return _SCRIPT_PREFIX.get(head)


def script_of_text(text: str) -> str | None:
    """Dominant script of the letters in ``text`` (``Latn``, ``Cyrl``, ``Arab``...), ``None`` if no letters."""
    counts: dict[str, int] = {}
    for ch in text:
        s = _char_script(ch)
        if s:
            counts[s] = counts.get(s, 0) + 1
    if not counts:
        return None
    return max(sorted(counts), key=counts.__getitem__)


def display_name(code: str) -> str:
    import langcodes

    try:
        return langcodes.Language.get(normalize(code).split("_")[0]).display_name()
    except Exception:  # display only
        return code
