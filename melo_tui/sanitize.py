"""Make untrusted text (messages, names, titles, emoji) safe to put on a terminal.

Nothing here interprets markup: callers wrap the result in ``rich.text.Text``. This module only
replaces characters that would act on the terminal or mislead the reader: C0/C1 controls and DEL
(escape sequences), bidirectional overrides and zero-width characters (spoofing), lone surrogates
(unencodable). Each becomes a visible ``⟨U+XXXX⟩`` marker. Long text is cut, with an indicator, so a
1 MB message renders as fast as a short one.
"""

import unicodedata

MAX_CHARS = 4000
MAX_LINES = 60

# shown as markers even though they are "format" characters: they reorder or hide text
_VISIBLE_FORMAT = frozenset(
    [0x061C, 0x180E, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2028, 0x2029, 0x2060, 0x2061, 0x2062,
     0x2063, 0x2064, 0xFEFF, 0xFFF9, 0xFFFA, 0xFFFB, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)


def marker(ch: str) -> str:
    return f"⟨U+{ord(ch):04X}⟩"


def _needs_marker(ch: str, keep_newlines: bool) -> bool:
    code = ord(ch)
    if ch == "\n":
        return not keep_newlines
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return True
    if code in _VISIBLE_FORMAT:
        return True
    cat = unicodedata.category(ch)
    return cat in ("Cs", "Cc") or (cat == "Cf" and code >= 0xE0000)  # surrogates, tag characters


def clean(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` with every dangerous or invisible character replaced by a visible marker; tabs as spaces."""
    if text.isprintable() and (keep_newlines or "\n" not in text):
        # fast path; isprintable() is False for every control, format and separator but the space
        return text
    out = []
    for ch in text:
        if ch == "\t":
            out.append("    ")
        elif _needs_marker(ch, keep_newlines):
            out.append(marker(ch))
        else:
            out.append(ch)
    return "".join(out)


def clean_line(text: str, limit: int = 200) -> str:
    """One line for names, titles and previews: newlines become markers, long text is cut."""
    text = text[: limit * 2]
    out = clean(text, keep_newlines=False)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def clean_body(text: str, *, max_chars: int = MAX_CHARS, max_lines: int = MAX_LINES) -> tuple[str, int]:
    """(safe text, number of characters of the original left out) for a message body."""
    head = text[:max_chars]
    lines = head.split("\n")
    if len(lines) > max_lines:
        head = "\n".join(lines[:max_lines])
    omitted = len(text) - len(head)
    return clean(head), omitted
