"""Compile the cue lexicon (vocab/cues.yaml) and a vocabulary's phrases into big alternation regexes.

Everything here is cached per (vocabulary, cue file): a worker process compiles once and reuses it.
Phrase syntax (both files): case-insensitive, matched on word boundaries; a space matches any run of
whitespace or hyphens; a trailing ``*`` matches the rest of the word ("atelecta*" -> atelectasis, atelectatic).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from repgls.vocab import Vocabulary, load_vocab

# Cue roles (first element of a role tuple). HYP_*: hypothetical / request frames ("evaluate for X", "to exclude X",
# "could obscure X"), hedges with their own low p; NOOP: a phrase matched only so that a shorter cue inside it does
# not match ("one or more" is not an alternative). UNC_PRED: a hedge that may also be predicated of a finding
# before it, (UNC_PRED, bare, p) ("pneumothorax is thought less likely"); COMP: a comparative, (COMP, (p before or
# None, needs a favour cue), p after) ("atelectasis is favored over pneumonia"). The miner resolves both per
# sentence into UNC_PRE / UNC_POST roles; a UNC_POST role whose second element is a frozenset of mention starts
# reaches only those mentions.
NEG_PRE, NEG_POST, PSEUDO_PRE, PSEUDO_POST, UNC_PRE, UNC_POST, CONJ, TERM, QUAL, SEV, CHG, HYP_PRE, HYP_POST, NOOP = (
    range(14))
# REF: a reference to one member of the differential before it, (REF, 0 first | -1 last, p) ("the former favored").
UNC_PRED, COMP, REF = 14, 15, 16
STATUS_PRE = (NEG_PRE, PSEUDO_PRE, UNC_PRE, HYP_PRE)
STATUS_POST = (NEG_POST, PSEUDO_POST, UNC_POST, HYP_POST)
HEDGE_ROLES = (UNC_PRE, UNC_POST, HYP_PRE, HYP_POST)

# Mention kinds.
SYN, ATTR, USYN, UNMENTION, BLOCKER = range(5)

_NORM_RE = re.compile(r"[\s\-]+")
SEVERITY_LEVELS = ("none", "trace", "mild", "moderate", "severe")
CHANGE_VALUES = ("none", "new", "worsened", "improved", "stable", "resolved")


def norm_phrase(s: str) -> str:
    """Lower-case and collapse whitespace/hyphen runs to one space (the lookup key of a match)."""
    return _NORM_RE.sub(" ", s.lower()).strip()


def phrase_regex(phrase: str) -> str:
    """Regex source for one phrase (without the word-boundary guards)."""
    p = phrase.strip().lower()
    wild = p.endswith("*")
    if wild:
        p = p[:-1]
    parts = [re.escape(w) for w in _NORM_RE.split(p) if w]
    src = r"[\s\-]+".join(parts)
    return src + (r"\w*" if wild else "")


_SPACE, _WILD = "\x00space", "\x00wild"


def _units(phrase: str) -> list[str]:
    """A phrase as trie units: single characters, _SPACE (whitespace/hyphen run) and a final _WILD."""
    p = phrase.strip().lower()
    wild = p.endswith("*")
    if wild:
        p = p[:-1]
    units: list[str] = []
    for i, w in enumerate(w for w in _NORM_RE.split(p) if w):
        if i:
            units.append(_SPACE)
        units.extend(w)
    if wild:
        units.append(_WILD)
    return units


def _trie_regex(node: dict) -> str:
    """Regex source of a trie (dict unit -> child; key "" marks the end of a phrase). Greedy optional groups
    try the longer continuation first, so the longest phrase wins, with backtracking to shorter ones."""
    end = "" in node
    alts = []
    for unit in sorted(k for k in node if k):
        head = "[\\s\\-]+" if unit == _SPACE else ("\\w*" if unit == _WILD else re.escape(unit))
        alts.append(head + _trie_regex(node[unit]))
    if not alts:
        return ""
    if end:
        return "(?:" + "|".join(alts) + ")?"
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def build_alternation(phrases: list[str], extra: str = "") -> re.Pattern[str]:
    """One regex matching any phrase on word boundaries; built as a character trie (fast with Python's re)
    whose greedy branches make the longest phrase win."""
    trie: dict = {}
    for p in set(phrases):
        node = trie
        for u in _units(p):
            node = node.setdefault(u, {})
        node[""] = {}
    src = rf"(?<![\w])(?:{_trie_regex(trie)})(?![\w])"
    if extra:
        src += "|" + extra
    return re.compile(src)


class PhraseTable:
    """Maps a matched string back to its phrase's payload: exact key first, then wildcard phrases."""

    def __init__(self) -> None:
        self.exact: dict[str, list[Any]] = {}
        self.wild: list[tuple[re.Pattern[str], list[Any]]] = []
        self._wild_src: dict[str, list[Any]] = {}

    def add(self, phrase: str, payload: Any) -> None:
        p = phrase.strip().lower()
        if not p:
            return
        if p.endswith("*"):
            self._wild_src.setdefault(p, []).append(payload)
        else:
            self.exact.setdefault(norm_phrase(p), []).append(payload)

    def finish(self) -> None:
        # Longest wildcard stem first so "pleural scar*" beats "scar*".
        for p in sorted(self._wild_src, key=lambda x: -len(x)):
            self.wild.append((re.compile(phrase_regex(p)), self._wild_src[p]))

    def phrases(self) -> list[str]:
        return list(self.exact) + list(self._wild_src)

    def lookup(self, matched: str) -> list[Any]:
        key = norm_phrase(matched)
        hit = self.exact.get(key)
        if hit is not None:
            return hit
        low = matched.lower()
        for rx, payload in self.wild:
            if rx.fullmatch(low):
                return payload
        return []


@dataclass(frozen=True)
class Cues:
    """The parsed cue lexicon."""

    version: str
    raw: dict[str, Any] = field(repr=False)
    table: PhraseTable = field(repr=False)
    regex: re.Pattern[str] = field(repr=False)
    positive_threshold: float
    pre_window: int
    post_window: int
    severity_window: int
    change_window: int
    conjunction_window: int
    abbreviations: frozenset[str]
    linking_hedges: frozenset[str] = frozenset()
    hedge_crosses: frozenset[str] = frozenset()
    slash_p: float = 0.39
    alt_connectors: dict[str, float] = field(default_factory=dict)
    alt_spread: bool = True
    alt_max_words: int = 3
    alt_signs: frozenset[str] = frozenset()
    alt_frames: frozenset[str] = frozenset()
    favor_cues: frozenset[str] = frozenset()
    pred_frame_words: frozenset[str] = frozenset()
    pred_followed_by: tuple[str, ...] = ()
    pred_max_prefix: int = 6
    mod_max_words: int = 4
    mod_max_words_prep: int = 8
    mod_prepositions: frozenset[str] = frozenset()
    mod_barriers: re.Pattern[str] | None = field(default=None, repr=False)
    mod_plural_verbs: frozenset[str] = frozenset()
    mod_not_shared: frozenset[str] = frozenset()
    mod_own_phrase: frozenset[str] = frozenset()
    template_labels: frozenset[str] = frozenset()
    template_negative: frozenset[str] = frozenset()
    section_names: frozenset[str] = frozenset()


def _cue_source(path: str | None) -> tuple[dict[str, Any], str]:
    if path is None:
        res = resources.files("repgls.vocab").joinpath("cues.yaml")
        with res.open("r", encoding="utf-8") as fh:
            return yaml.safe_load(fh), "built-in cues.yaml"
    with open(Path(path), encoding="utf-8") as fh:
        return yaml.safe_load(fh), str(path)


def cue_entry(value: Any, where: str) -> tuple[float, str]:
    """A lexicon entry ``p`` or ``[p, "note"]`` -> (p, note); the note names the entry's source."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or not isinstance(value[1], str):
            raise ValueError(f"{where}: expected p or [p, \"source note\"], got {value!r}")
        return _prob(value[0], where), value[1]
    return _prob(value, where), ""


def partial_change_phrases(raw: dict[str, Any]) -> list[str]:
    """The "degree + event" phrases of ``partial_change`` ("partially" + "cleared" -> "partially cleared")."""
    pc = raw.get("partial_change", {}) or {}
    return [f"{d} {e}" for d in pc.get("degrees", []) or [] for e in pc.get("events", []) or []]


def favour_reference_phrases(raw: dict[str, Any], src: str = "cues") -> list[tuple[str, int, float, str]]:
    """``favour_references`` as (phrase, 0 first | -1 last member, p, source note)."""
    fr = raw.get("favour_references", {}) or {}
    if not fr:
        return []
    p, note = cue_entry(fr.get("p", 0.7), f"{src}: favour_references.p")
    out = []
    for ref, which in (fr.get("refs", {}) or {}).items():
        if which not in ("first", "last"):
            raise ValueError(f"{src}: favour_references.refs.{ref}: expected first or last, got {which!r}")
        for form in fr.get("forms", []) or []:
            out.append((str(form).replace("{ref}", str(ref)), 0 if which == "first" else -1, p, note))
    return out


def comparative_phrases(raw: dict[str, Any], src: str = "cues") -> list[tuple[str, float | None, float, bool]]:
    """``comparatives`` as (phrase, p before or None, p after, needs a favour cue), with "is/are" forms of the
    phrases that have a ``before`` value ("is favored over", so that the post hedge "is favored" does not hide
    them)."""
    out = []
    for p, v in (raw.get("comparatives", {}) or {}).items():
        if not isinstance(v, dict) or "after" not in v:
            raise ValueError(f"{src}: comparatives.{p}: expected {{before: p, after: p, needs_favor: bool}}")
        before = None if v.get("before") is None else _prob(v["before"], f"{src}: comparatives.{p}.before")
        after = _prob(v["after"], f"{src}: comparatives.{p}.after")
        fav = bool(v.get("needs_favor", False))
        out.append((p, before, after, fav))
        if before is not None:
            out.extend((f"{cop} {p}", before, after, fav) for cop in ("is", "are", "was", "were"))
    return out


def _prob(value: Any, where: str) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: probability {value!r} is not a number") from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{where}: probability {p} is not in [0, 1]")
    return p


def _word_regex(phrases: list[str]) -> re.Pattern[str] | None:
    """One regex finding any of ``phrases`` as whole words (None for no phrases)."""
    if not phrases:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(phrase_regex(str(p)) for p in phrases) + r")(?!\w)")


def _cue_table(raw: dict[str, Any], src: str) -> tuple[PhraseTable, dict[str, float]]:
    """The phrase table of every cue role of a cue lexicon, and the differential connectors (phrase -> p)."""
    t = PhraseTable()
    neg = raw.get("negation", {}) or {}
    for p in neg.get("pre", []) or []:
        t.add(p, (NEG_PRE, None, 0.0))
    for p in neg.get("post", []) or []:
        t.add(p, (NEG_POST, None, 0.0))
    for key, role in (("pre", PSEUDO_PRE), ("post", PSEUDO_POST)):
        for p, v in (raw.get("pseudo_negation", {}) or {}).get(key, {}).items():
            t.add(p, (role, None, cue_entry(v, f"{src}: pseudo_negation.{key}.{p}")[0]))
    unc_pre: dict[str, float] = {}
    for key, role in (("pre", UNC_PRE), ("post", UNC_POST)):
        for p, v in (raw.get("uncertainty", {}) or {}).get(key, {}).items():
            pv = cue_entry(v, f"{src}: uncertainty.{key}.{p}")[0]
            t.add(p, (role, None, pv))
            if key == "pre":
                unc_pre[norm_phrase(p)] = pv
    pred = raw.get("predicative", {}) or {}
    for p, how in (pred.get("hedges", {}) or {}).items():
        if how not in ("bare", "copula"):
            raise ValueError(f"{src}: predicative.hedges.{p}: expected 'bare' or 'copula', got {how!r}")
        if norm_phrase(p) not in unc_pre:
            raise ValueError(f"{src}: predicative.hedges.{p}: not an uncertainty.pre phrase (its p comes from there)")
        t.add(p, (UNC_PRED, how == "bare", unc_pre[norm_phrase(p)]))
    for p, before, after, fav in comparative_phrases(raw, src):
        t.add(p, (COMP, (before, fav), after))
    for p, which, pv, _note in favour_reference_phrases(raw, src):
        t.add(p, (REF, which, pv))
    for key, role in (("pre", HYP_PRE), ("post", HYP_POST)):
        for p, v in (raw.get("hypothetical", {}) or {}).get(key, {}).items():
            t.add(p, (role, None, cue_entry(v, f"{src}: hypothetical.{key}.{p}")[0]))
    alt = raw.get("alternatives", {}) or {}
    connectors: dict[str, float] = {}
    for p, v in (alt.get("connectors", {}) or {}).items():
        pv = cue_entry(v, f"{src}: alternatives.connectors.{p}")[0]
        connectors[norm_phrase(p)] = pv
        t.add(p, (CONJ, None, pv))
    for p in raw.get("not_conjunction", []) or []:
        t.add(p, (NOOP, None, 0.0))
    for p in raw.get("terminators", []) or []:
        t.add(p, (TERM, None, 0.0))
    quals = raw.get("qualifiers", {}) or {}
    for p in quals.get("abnormal", []) or []:
        t.add(p, (QUAL, (-1, "abnormal"), 1.0))
    for p in quals.get("normal", []) or []:
        t.add(p, (QUAL, (-1, "normal"), 0.0))
    for p, v in (quals.get("borderline", {}) or {}).items():
        t.add(p, (QUAL, (-1, "borderline"), _prob(v, f"{src}: qualifiers.borderline.{p}")))
    for p, v in (raw.get("severity", {}) or {}).items():
        if not (isinstance(v, list) and len(v) == 2 and v[0] in SEVERITY_LEVELS and v[1] in ("typical", "atypical")):
            raise ValueError(f"{src}: severity.{p}: expected [level, typical|atypical], level in {SEVERITY_LEVELS}")
        t.add(p, (SEV, (v[0], v[1]), 0.0))
    for change, phrases in (raw.get("change", {}) or {}).items():
        if change not in CHANGE_VALUES:
            raise ValueError(f"{src}: change.{change}: not one of {CHANGE_VALUES}")
        for p in phrases or []:
            t.add(p, (CHG, change, 0.0))
    for p in partial_change_phrases(raw):
        t.add(p, (CHG, "improved", 0.0))
    t.finish()
    return t, connectors


@lru_cache(maxsize=8)
def load_cues(path: str | None = None) -> Cues:
    """Load and compile the cue lexicon (default: the packaged ``vocab/cues.yaml``).

    Raises:
        ValueError: naming the file and the entry that is malformed.
    """
    raw, src = _cue_source(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{src}: not a YAML mapping")
    t, connectors = _cue_table(raw, src)
    pred = raw.get("predicative", {}) or {}
    alt = raw.get("alternatives", {}) or {}
    regex = build_alternation(t.phrases(), extra=r"[;:]")
    scope = raw.get("modifier_scope", {}) or {}
    tpl = raw.get("templates", {}) or {}
    if not isinstance(tpl, dict):
        raise ValueError(f"{src}: templates must be a mapping (labels, negative_values)")
    return Cues(
        version=str(raw.get("version", "0")),
        raw=raw,
        table=t,
        regex=regex,
        positive_threshold=float(raw.get("positive_threshold", 0.85)),
        pre_window=int(raw.get("pre_window", 150)),
        post_window=int(raw.get("post_window", 60)),
        severity_window=int(raw.get("severity_window", 30)),
        change_window=int(raw.get("change_window", 70)),
        conjunction_window=int(raw.get("conjunction_window", 25)),
        abbreviations=frozenset(str(a).lower() for a in raw.get("abbreviations", []) or []),
        linking_hedges=frozenset(norm_phrase(str(a)) for a in raw.get("linking_hedges", []) or []),
        hedge_crosses=frozenset(norm_phrase(str(a)) for a in raw.get("hedge_crosses", []) or []),
        slash_p=cue_entry(alt.get("slash", 0.39), f"{src}: alternatives.slash")[0],
        alt_connectors=connectors,
        alt_spread=bool(alt.get("spread", True)),
        alt_max_words=int(alt.get("max_words", 3)),
        alt_signs=frozenset(norm_phrase(str(a)) for a in alt.get("signs", []) or []),
        alt_frames=frozenset(norm_phrase(str(a)) for a in alt.get("frames", []) or []),
        favor_cues=frozenset(norm_phrase(str(a)) for a in raw.get("favor_cues", []) or []),
        pred_frame_words=frozenset(str(a).lower() for a in pred.get("frame_words", []) or []),
        pred_followed_by=tuple(norm_phrase(str(a)) for a in pred.get("followed_by", []) or []),
        pred_max_prefix=int(pred.get("max_prefix_words", 6)),
        mod_max_words=int(scope.get("max_words", 4)),
        mod_max_words_prep=int(scope.get("max_words_after_preposition", 8)),
        mod_prepositions=frozenset(str(a).lower() for a in scope.get("prepositions", []) or []),
        mod_barriers=_word_regex(scope.get("barriers", []) or []),
        mod_plural_verbs=frozenset(str(a).lower() for a in scope.get("plural_verbs", []) or []),
        mod_not_shared=frozenset(norm_phrase(str(a)) for a in scope.get("not_shared", []) or []),
        mod_own_phrase=frozenset(str(a).lower() for a in scope.get("own_phrase_words", []) or []),
        template_labels=frozenset(norm_phrase(str(a)) for a in tpl.get("labels", []) or []),
        template_negative=frozenset(norm_phrase(str(a)) for a in tpl.get("negative_values", []) or []),
        section_names=frozenset(norm_phrase(str(n)) for names in (raw.get("sections", {}) or {}).values()
                                for n in names or []),
    )


@dataclass(frozen=True)
class VocabLexicon:
    """A vocabulary compiled for matching.

    Attributes:
        classes: class names in output order (K).
        table: phrase -> list of (class index, kind, p); class index -1 for unmentions/blockers.
        regex: the one alternation over all phrases of all classes.
        cue_table, cue_regex: the cue lexicon plus class-specific ``qualifiers`` (role QUAL, group = class
            index; the global qualifiers have group -1); own_qualifiers: classes that have their own.
        no_finding: index of the "No Finding" class or -1; no_finding_ignore: indices that do not block it.
    """

    vocab: Vocabulary
    classes: tuple[str, ...]
    table: PhraseTable = field(repr=False)
    regex: re.Pattern[str] = field(repr=False)
    cues: Cues = field(repr=False)
    cue_table: PhraseTable = field(repr=False)
    cue_regex: re.Pattern[str] = field(repr=False)
    own_qualifiers: frozenset[int]
    no_finding: int
    no_finding_ignore: frozenset[int]
    class_index: dict[str, int] = field(default_factory=dict, repr=False)


def _as_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list of phrases")
    return [str(v) for v in value]


@lru_cache(maxsize=16)
def compile_vocab(name: str = "chexpert14", cues_path: str | None = None) -> VocabLexicon:
    """Compile a vocabulary's ``synonyms``/``attributes``/``uncertain_synonyms``/``unmentions`` (+ blockers)."""
    vocab = load_vocab(name)
    cues = load_cues(cues_path)
    t = PhraseTable()
    ct = PhraseTable()
    for key, payload in cues.table.exact.items():
        ct.exact[key] = list(payload)
    for key, payload in cues.table._wild_src.items():
        ct._wild_src[key] = list(payload)
    own_q: set[int] = set()
    for k, entry in enumerate(vocab.entries):
        where = f"vocabulary {vocab.name}: class {entry.get('name')!r}"
        for p in _as_list(entry.get("synonyms"), f"{where}: synonyms"):
            t.add(p, (k, SYN, 1.0))
        for p in _as_list(entry.get("attributes"), f"{where}: attributes"):
            t.add(p, (k, ATTR, 1.0))
        usyn = entry.get("uncertain_synonyms") or {}
        if not isinstance(usyn, dict):
            raise ValueError(f"{where}: uncertain_synonyms must map phrase -> probability")
        for p, v in usyn.items():
            t.add(p, (k, USYN, _prob(v, f"{where}: uncertain_synonyms.{p}")))
        for p in _as_list(entry.get("unmentions"), f"{where}: unmentions"):
            t.add(p, (-1, UNMENTION, 0.0))
        own = entry.get("qualifiers")
        if own:
            own_q.add(k)
            for kind in ("abnormal", "normal"):
                for p in _as_list(own.get(kind), f"{where}: qualifiers.{kind}"):
                    ct.add(p, (QUAL, (k, kind), 1.0 if kind == "abnormal" else 0.0))
    nf_cfg = vocab.raw.get("no_finding") or {}
    nf_name = nf_cfg.get("class", "No Finding") if nf_cfg else "No Finding"
    no_finding = vocab.classes.index(nf_name) if nf_name in vocab.classes else -1
    ignore = frozenset(vocab.classes.index(c) for c in nf_cfg.get("ignore", []) if c in vocab.classes)
    for p in _as_list(nf_cfg.get("blockers"), f"vocabulary {vocab.name}: no_finding.blockers"):
        t.add(p, (-1, BLOCKER, 1.0))
    t.finish()
    ct.finish()
    if not t.phrases():
        raise ValueError(f"vocabulary {vocab.name}: no synonyms or attributes to match")
    return VocabLexicon(
        vocab=vocab,
        classes=vocab.classes,
        table=t,
        regex=build_alternation(t.phrases()),
        cues=cues,
        cue_table=ct,
        cue_regex=build_alternation(ct.phrases(), extra=r"[;:]"),
        own_qualifiers=frozenset(own_q),
        no_finding=no_finding,
        no_finding_ignore=ignore,
        class_index={c: i for i, c in enumerate(vocab.classes)},
    )
