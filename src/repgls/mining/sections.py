"""Report sections ("FINDINGS:", "Impression:" ...) and sentence splitting, by regex (fast, offsets kept).

Both return character offsets into the original text so that mined spans index it directly.
"""

from __future__ import annotations

import re
from functools import lru_cache

from repgls.mining.lexicon import load_cues

# A header is "Name:" at the start of a line (any case), or an ALL-CAPS "NAME:" anywhere (inline reports).
_HEADER_RE = re.compile(
    r"(?m)(?:^[ \t]*(?P<a>[A-Za-z][A-Za-z /&-]{1,40}?)[ \t]*:|(?<![\w])(?P<b>[A-Z][A-Z /&-]{2,40}?)[ \t]*:)"
)
# boundaries: sentence punctuation, a blank line, a newline before a list item ("1. ", "2) ", "- "), and an inline
# "N) " item that starts a capitalised clause ("1) No effusion 2) Cardiomegaly"; "N. " ends with its period anyway)
_BOUNDARY_RE = re.compile(r"[.!?]+(?=\s|$)|\n[ \t]*\n|\n(?=[ \t]*(?:\d{1,2}[.)]|[-*\u2022])[ \t])"
                          r"|[ \t](?=\d{1,2}\)[ \t]+[A-Z])")
_TOKEN_BEFORE_RE = re.compile(r"([\w./]+)$")


@lru_cache(maxsize=4)
def _section_names(cues_path: str | None = None) -> dict[str, str]:
    """Header text (lower case) -> canonical section name, from the cue lexicon's ``sections``."""
    out: dict[str, str] = {}
    for canon, names in load_cues(cues_path).raw.get("sections", {}).items():
        for n in names:
            out[str(n).lower()] = str(canon)
    return out


def find_sections(text: str) -> list[tuple[str, int, int]]:
    """Split a report into ``(section_name, start, end)`` spans (offsets into ``text``).

    Text before the first recognised header is section ``""``. Unknown headers ("Dr. Smith:") are
    ignored unless they are in the lexicon's ``sections`` table, so free text with colons is safe.
    """
    names = _section_names()
    heads: list[tuple[str, int, int]] = []  # (canonical, header_start, content_start)
    for m in _HEADER_RE.finditer(text):
        raw = (m.group("a") or m.group("b") or "").strip().lower()
        canon = names.get(raw)
        if canon is not None:
            heads.append((canon, m.start(), m.end()))
    if not heads:
        return [("", 0, len(text))]
    out: list[tuple[str, int, int]] = []
    if heads[0][1] > 0:
        out.append(("", 0, heads[0][1]))
    for i, (canon, _hs, cs) in enumerate(heads):
        end = heads[i + 1][1] if i + 1 < len(heads) else len(text)
        out.append((canon, cs, end))
    return out


def select_sections(text: str, wanted: tuple[str, ...] | None) -> list[tuple[int, int]]:
    """Spans of the wanted sections in text order; the whole text when none of them is present.

    Args:
        wanted: canonical names ("findings", "impression", ...); None or empty = whole text.
    """
    if not wanted:
        return [(0, len(text))]
    spans = [(s, e) for name, s, e in find_sections(text) if name in wanted]
    return spans or [(0, len(text))]


def split_sentences(text: str, start: int = 0, end: int | None = None,
                    abbreviations: frozenset[str] = frozenset()) -> list[tuple[int, int]]:
    """Sentence spans ``(s, e)`` of ``text[start:end]``, stripped of surrounding whitespace.

    Boundaries: ``.``/``!``/``?`` before whitespace (not after an abbreviation such as "approx." nor after a
    list number "1."), blank lines, a newline before a list item ("1. ", "- "), and an inline item "2) " that
    opens a capitalised clause.
    """
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    s = start
    for m in _BOUNDARY_RE.finditer(text, start, end):
        if text[m.start()] in ".!?":
            tb = _TOKEN_BEFORE_RE.search(text, max(s, m.start() - 24), m.start())
            if tb is not None:
                tok = tb.group(1).lower().rstrip(".")
                if tok in abbreviations:
                    continue
                # "1." opening a sentence is a list marker, not a sentence.
                if tok.isdigit() and len(tok) <= 2 and not text[s:tb.start()].strip():
                    continue
            e = m.end()
        else:
            e = m.start()
        _push(text, s, e, spans)
        s = m.end()
    _push(text, s, end, spans)
    return spans


def _push(text: str, s: int, e: int, spans: list[tuple[int, int]]) -> None:
    seg = text[s:e]
    stripped = seg.strip()
    if stripped:
        s += len(seg) - len(seg.lstrip())
        spans.append((s, s + len(stripped)))
