"""The rule-based report miner: phrases + cue scopes -> graded findings (FINDINGS_SCHEMA rows).

Per report: (1) optional section selection, (2) regex sentence split, plus a split before each template label
("HEART: Enlarged.", "Tubes/lines: none."; labels from cues.yaml ``templates`` or vocabulary phrases, whose colon
is no terminator), (3) one alternation regex finds all
finding mentions and one finds all cues (both precompiled per vocabulary), (4) per mention, within its
sentence: status from the nearest status cue before it (forward scope ends at a terminator or ";"/":"; a
hedge's scope crosses causal connectors, a hypothetical frame overrides a nearer hedge) or after it (within
``post_window`` characters, or further back over the subject of the cue's clause), in CheXpert's order:
negation-looking doubt ("cannot be excluded", "no new") -> negation -> hedge (incl. hypothetical frames);
alternatives "X or/versus Y", "X/Y" cap each member at p 0.5 (uncertain); severity and change
from the nearest cue; (5) mentions of one finding are merged (positive > uncertain > negative, then the
most certain cue), (6) "No Finding" (chexpert14) is added when nothing but ignored classes is positive or
uncertain and no other abnormality ("blockers") is asserted.

Merge and certainty rules are documented in README.md.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from repgls.mining.lexicon import (
    ATTR,
    BLOCKER,
    CHG,
    COMP,
    CONJ,
    HEDGE_ROLES,
    HYP_PRE,
    NEG_POST,
    NEG_PRE,
    PSEUDO_POST,
    PSEUDO_PRE,
    QUAL,
    REF,
    SEV,
    STATUS_POST,
    STATUS_PRE,
    TERM,
    UNC_POST,
    UNC_PRE,
    UNC_PRED,
    UNMENTION,
    USYN,
    VocabLexicon,
    compile_vocab,
    norm_phrase,
    phrase_regex,
)
from repgls.mining.schema import FINDINGS_COLUMNS
from repgls.mining.sections import select_sections, split_sentences

_SEV_RANK = {"none": 0, "trace": 1, "mild": 2, "moderate": 3, "severe": 4}
_STATUS_RANK = {"negative": 0, "uncertain": 1, "positive": 2}
# finite verbs / auxiliaries that head a clause's predicate (used only to bound backward negation scope)
_FINITE_RE = re.compile(r"\b(?:is|are|was|were|has|have|had|remains?|remained|appears?|appeared|seems?|seemed|"
                        r"persists?|persisted|shows?|showed|demonstrates?|demonstrated|measures?|measured)\b")
# "<qualifier> <noun> of the <attribute>": the qualifier modifies another head noun
_OTHER_HEAD_RE = re.compile(r"[a-z]\s+of\b", re.IGNORECASE)
# template labels ("HEART:", "Heart size:", "Tubes/lines:"): the characters a label is made of, the characters that
# may open one (besides the start of the text), a column gap, and the connectors of a compound label
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ /&\t")
_LABEL_OPEN = frozenset("\n\r.!?;:)*-\u2022")
_LABEL_MAX = 40
_GAP_RE = re.compile(r"[ \t]{2,}")
_LABEL_SPLIT_RE = re.compile(r"\s*(?:/|&|\band\b)\s*")
# the text between a status cue and a ":" that introduces the cue's object ("negative for:", "no evidence of:")
_COLON_OBJECT_RE = re.compile(r"[ \t]*(?:(?:[A-Za-z]+[ \t]+){0,2}(?:of|for))?[ \t]*", re.IGNORECASE)
_CHANGE_TYP = {"improved": "atypical", "resolved": "atypical", "worsened": "typical", "new": "typical"}
_WORD_RE = re.compile(r"[a-z]+")
# characters a coordination gap ("A, B and/or C", "A & B") or a predicative frame may hold besides words
_LINK_PUNCT = frozenset(" \t\r\n,/&-()")
_MOD_ROLES = (SEV, CHG)
# list separators inside a coordination gap (cue spans already cut out and joined by a space)
_DECIMAL_RE = re.compile(r"\d\.\d")
_CONNECTORS = frozenset(("and", "or", "but", "nor"))
_SEP_RE = re.compile(r",|&|/|\band\b|\beither\b|\s{2,}")


def _canon(cue: str) -> str:
    """The status cue in canonical form (lower case, single spaces): "Cannot be\n excluded" -> "cannot be excluded"."""
    return " ".join(cue.lower().split())


@dataclass(slots=True)
class Mention:
    """One mention of one class, after its cues were resolved."""

    cls: int
    status: str
    p: float
    cue: str
    severity: str
    severity_cue: str
    severity_typ: str
    change: str
    change_cue: str
    start: int
    end: int
    s_start: int
    s_end: int
    sev_at: int = -1   # start of the mention's own severity word (-1: none or shared)
    chg_at: int = -1   # the same for the change word


@dataclass(slots=True)
class Link:
    """How two neighbouring mentions of a sentence are joined: ``alt`` (a differential connector, with its p and
    the connector as written) or a plain coordination ("and", ","; ``has_and``: the word "and" is there)."""

    alt: bool
    p: float
    cue: str
    has_and: bool
    extra: int = 0   # list items between the two mentions that name no finding ("A, aspiration, or B": 1)


class RuleMiner:
    """Compiled miner for one vocabulary (+ cue lexicon). Thread-safe; cheap to call per report.

    Args:
        vocab: built-in vocabulary name or YAML path.
        sections: canonical section names to mine ("impression", "findings"); None = whole text.
        cues: path of a cue lexicon YAML; None = the packaged ``vocab/cues.yaml``.
    """

    def __init__(self, vocab: str = "chexpert14", sections: tuple[str, ...] | None = None,
                 cues: str | None = None) -> None:
        self.lex: VocabLexicon = compile_vocab(vocab, cues)
        self.cues = self.lex.cues
        self.sections = tuple(s.lower() for s in sections) if sections else None
        self.classes = self.lex.classes
        self.lexicon_version = f"{self.lex.vocab.name}-v{self.lex.vocab.version}+cues-v{self.cues.version}"
        self._abbrev = self.cues.abbreviations
        self._label_cache: dict[str, bool] = {}
        # role lists (by identity, as the lookup returns them) that the sentence pass must resolve
        ct = self.lex.cue_table
        self._special = frozenset(id(pl) for pl in [*ct.exact.values(), *(w[1] for w in ct.wild)]
                                  if any(r[0] >= UNC_PRED for r in pl))
        conn = "|".join(phrase_regex(k) for k in sorted(self.cues.alt_connectors, key=len, reverse=True))
        # an alternative that names no finding before the first / after the last member of a differential
        self._alt_lead = re.compile(rf"[a-z][\s,]*(?:{conn})(?![\w])[\s,]*$") if conn else None
        self._alt_trail = re.compile(rf"[\s,]*(?:{conn})[\s,]+[a-z]") if conn else None

    # ------------------------------------------------------------------ matching
    def _mentions(self, text: str, low: str, s0: int, s1: int) -> list[tuple[int, int, list[Any]]]:
        out = []
        lookup = self.lex.table.lookup
        for m in self.lex.regex.finditer(low, s0, s1):
            payload = [p for p in lookup(m.group()) if p[1] != UNMENTION]
            if not payload:  # an unmention: it consumes the text so no shorter phrase matches inside it
                continue
            out.append((m.start(), m.end(), payload))
        return out

    def _cues(self, text: str, low: str, s0: int, s1: int,
              label_colons: frozenset[int] | set[int] = frozenset()) -> list[tuple[int, int, str, list[Any]]]:
        """Cues of one sentence: (start, end, the words as written, roles). A ":" is a terminator unless it ends a
        template label ("HEART: Enlarged") or follows a status cue ("negative for: pneumothorax")."""
        out = []
        lookup = self.lex.cue_table.lookup
        for m in self.lex.cue_regex.finditer(low, s0, s1):
            g = m.group()
            if g == ":":
                if m.start() in label_colons or (out and any(r[0] in STATUS_PRE for r in out[-1][3])
                                                 and _COLON_OBJECT_RE.fullmatch(text, out[-1][1], m.start())):
                    continue
                roles = [(TERM, None, 0.0)]
            else:
                roles = [(TERM, None, 0.0)] if g == ";" else lookup(g)
            if roles:
                out.append((m.start(), m.end(), text[m.start():m.end()], roles))
        return out

    # ------------------------------------------------------------------ cue resolution
    def _resolve(self, text: str, low: str, ms: int, me: int, cls: int, kind: int, base_p: float,
                 cues: list[tuple[int, int, str, list[Any]]], cue_starts: list[int],
                 prev_end: int, next_start: int, s_start: int, s_end: int,
                 m_starts: list[int] | None = None, alt: tuple | None = None,
                 linked: tuple[bool, bool] = (False, False)) -> Mention | None:
        """One mention's status, certainty, severity and change. ``alt``: the cap of the differential the mention
        belongs to (p, connector); ``linked``: whether it is coordinated with its previous / next mention."""
        c = self.cues
        i_after = bisect_left(cue_starts, me)
        # index of the last cue ending before the mention start
        i_before = bisect_left(cue_starts, ms) - 1
        while i_before >= 0 and cues[i_before][1] > ms:
            i_before -= 1
        pre = post = None
        pre_at = -1
        # ---- status cue before (forward scope). The nearest status cue wins, except: a linking hedge inside a
        # negation is negated ("no consolidation concerning for pneumonia"); a hypothetical frame further back
        # overrides a nearer hedge ("to evaluate for possible pneumonia"); a hedge's scope crosses causal
        # connectors ("possibly related to X versus Y", "may be secondary to X or Y"), a negation's does not.
        j = i_before
        crossed = False
        while j >= 0:
            cs, ce, g, roles = cues[j]
            if ms - ce > c.pre_window:
                break
            hit = None
            term = False
            for r in roles:
                if r[0] == TERM:
                    term = True
                    break
                if r[0] in STATUS_PRE:
                    hit = r
            if term:
                if _canon(g) in c.hedge_crosses and (pre is None or pre[0][0] != NEG_PRE):
                    crossed = True
                    j -= 1
                    continue
                break
            if hit is not None:
                if pre is None:
                    if crossed and hit[0] == NEG_PRE:
                        break
                    pre, pre_at = (hit, g), ce
                    if hit[0] not in (UNC_PRE,):
                        break
                elif hit[0] == NEG_PRE:
                    # a linking hedge inside a negation is negated: "no consolidation concerning for pneumonia"
                    if not crossed and _canon(pre[1]) in c.linking_hedges:
                        pre = (hit, g)
                    break
                elif hit[0] == HYP_PRE:
                    pre = (hit, g)
                    break
                else:
                    break
            j -= 1
        # ---- status cue after (backward scope): within post_window characters, or further when the cue is in the
        # predicate of the clause whose subject holds the mention ("The nodules and masses seen on the prior
        # exam are smaller and not definitely seen"). A predicative hedge / comparative reaches only the mentions
        # the sentence pass gave it (its subject).
        j = i_after
        while j < len(cues):
            cs, _ce, g, roles = cues[j]
            if cs - me > c.pre_window:
                break
            hit = None
            stop = False
            for r in roles:
                if r[0] == TERM:
                    stop = True
                elif r[0] in STATUS_POST:
                    hit = r
                elif r[0] in STATUS_PRE:
                    stop = True
            if hit is not None:
                if hit[1] is not None:
                    if ms in hit[1]:
                        post = (hit, g)
                elif self._post_reaches(text, me, cs, g, cs - me <= c.post_window, m_starts):
                    post = (hit, g)
                break
            if stop:
                break
            j += 1
        # ---- qualifiers for attribute mentions ("heart size" + normal/enlarged)
        status, p, cue = "positive", base_p, ""
        sev_level, sev_cue, sev_typ, sev_at = "none", "", "", -1
        if kind == ATTR:
            qual = self._qualifier(text, cls, ms, me, cues, i_before, i_after)
            if qual is None:
                return None
            (_qgroup, qkind), qp, qg = qual
            if qkind == "normal":
                status, p, cue = "negative", 0.0, _canon(qg)
            elif qkind == "borderline":
                status, p, cue = "uncertain", qp, _canon(qg)
                sev_level, sev_cue, sev_typ = "trace", qg, "atypical"
        elif kind == USYN:
            status, cue = ("uncertain" if base_p < c.positive_threshold else "positive"), _canon(text[ms:me])
        # ---- combine status cues (CheXpert order: pseudo-negation -> negation -> hedge)
        roles_found = [x for x in (pre, post) if x is not None]
        pseudo = [x for x in roles_found if x[0][0] in (PSEUDO_PRE, PSEUDO_POST)]
        neg = [x for x in roles_found if x[0][0] in (NEG_PRE, NEG_POST)]
        hedge = [x for x in roles_found if x[0][0] in HEDGE_ROLES]
        if pseudo:
            r, g = pseudo[0]
            status, p, cue = "uncertain", r[2], _canon(g)
        elif neg:
            r, g = neg[0]
            status, p, cue = "negative", 0.0, _canon(g)
        elif hedge and status != "negative":
            r, g = min(hedge, key=lambda x: x[0][2])
            p = min(p, r[2]) if status == "uncertain" else r[2]
            cue = _canon(g)
            status = "positive" if p >= c.positive_threshold else "uncertain"
        # ---- alternatives ("X or Y", "X versus Y", "X/Y", "A, B, or C"): each member of a differential at most
        # its share (the sentence pass computed it); a mention with a connector next to it and no finding on the
        # other side ("atelectasis or scarring") takes the connector's p. A member the reader favours ("favor X
        # versus Y": the favour cue's first finding) keeps its own p.
        if status != "negative" and not pseudo and kind != USYN:
            conj = alt if alt is not None else self._conjunction(ms, me, cues, i_before, i_after, linked,
                                                                 prev_end, next_start)
            if conj is not None and len(conj) > 3 and conj[3] is not None:
                # the member a reference favours ("the former favored"): the favour value, or its own hedge's p
                fp, fg = conj[3]
                if fp < p:
                    p, cue = fp, _canon(fg)
                status = "positive" if p >= c.positive_threshold else "uncertain"
            elif conj is not None and conj[0] < p:
                favoured = (pre is not None and pre in hedge and _canon(pre[1]) in c.favor_cues
                            and (not m_starts or bisect_left(m_starts, pre_at) == bisect_left(m_starts, ms)))
                if not favoured:
                    # the cue stays the written hedge when it is a hedge of its own ("may reflect atelectasis or
                    # pneumonia"); the connector when there is none or the hedge states a positive ("consistent
                    # with atelectasis or pneumonia" is a plain differential)
                    keep = bool(hedge) and p < c.positive_threshold
                    status, p, cue = "uncertain", conj[0], (cue if keep else _canon(conj[1]))
        # ---- severity and change: a word before the mention that modifies it, or one after it in its clause
        if sev_level == "none":
            sv = self._modifier(text, low, cues, i_before, i_after, ms, me, SEV, c.severity_window,
                                max(prev_end, s_start), min(next_start, s_end), next_start < s_end)
            if sv is not None:
                (sev_level, sev_typ), sev_cue, sev_at = sv[0][1], sv[1], sv[2]
        chg, chg_cue, chg_at = "none", "", -1
        ch = self._modifier(text, low, cues, i_before, i_after, ms, me, CHG, c.change_window,
                            max(prev_end, s_start), min(next_start, s_end), next_start < s_end)
        if ch is not None:
            chg, chg_cue, chg_at = ch[0][1], ch[1], ch[2]
        return Mention(cls, status, float(p), cue, sev_level, sev_cue, sev_typ, chg, chg_cue,
                       ms, me, s_start, s_end, sev_at, chg_at)

    @staticmethod
    def _post_reaches(text: str, me: int, cs: int, cue: str, near: bool, m_starts: list[int] | None) -> bool:
        """Does a post cue at ``cs`` reach back to a mention ending at ``me``? Near (within post_window): yes, unless
        another mention stands after a verb in between ("pneumonia has improved and effusion resolved"). Further:
        only when the mention is in the subject of the cue's clause, i.e. the gap and the cue hold at most one
        finite verb between them and no other mention follows that verb."""
        if near:
            k = bisect_left(m_starts, me) if m_starts else 0
            if not m_starts or k >= len(m_starts) or m_starts[k] >= cs:
                return True  # no other mention in between: the common case, no text scan
        gap = text[me:cs].lower()
        v = _FINITE_RE.search(gap)
        if v is not None and m_starts:
            k = bisect_left(m_starts, me + v.end())
            if k < len(m_starts) and m_starts[k] < cs:
                return False
        if near:
            return True
        n_verbs = len(_FINITE_RE.findall(gap)) + (1 if _FINITE_RE.match(cue.lower()) else 0)
        if n_verbs > 1:
            return False
        # a comma after the clause's verb starts another clause or an apposition ("is stable, ... not seen")
        return v is None or "," not in gap[v.end():]

    def _qualifier(self, text: str, cls: int, ms: int, me: int, cues: list, i_before: int,
                   i_after: int) -> tuple | None:
        """Nearest qualifier (class-specific group if the class has one) within post_window, same clause.

        A qualifier before the attribute does not reach it through another head noun ("abnormal configuration
        of the heart"); one after it does not reach back over a comma or semicolon with no verb in between
        ("stable heart size, moderately enlarged aorta": the qualifier starts another noun phrase)."""
        group = cls if cls in self.lex.own_qualifiers else -1
        win = self.cues.post_window
        best = None
        j = i_before
        while j >= 0:
            cs, ce, g, roles = cues[j]
            if ms - ce > win:
                break
            q = next((r for r in roles if r[0] == QUAL and r[1][0] == group), None)
            if q is not None:
                if not _OTHER_HEAD_RE.search(text[ce:ms]):
                    best = (ms - ce, (q[1], q[2], g))
                break
            if any(r[0] == TERM for r in roles):
                break
            j -= 1
        j = i_after
        neg_at = -1  # a negation between the attribute and its qualifier: "Mediastinum: no widening"
        while j < len(cues):
            cs, ce, g, roles = cues[j]
            if cs - me > win:
                break
            q = next((r for r in roles if r[0] == QUAL and r[1][0] == group), None)
            if q is not None:
                gap = text[me:cs]
                if ("," in gap or ";" in gap) and not _FINITE_RE.search(gap.lower()):
                    break
                if best is None or cs - me <= best[0]:
                    if neg_at >= 0 and q[1][1] == "abnormal":
                        best = (cs - me, ((group, "normal"), 0.0, text[neg_at:ce]))
                    else:
                        best = (cs - me, (q[1], q[2], g))
                break
            if any(r[0] == TERM for r in roles):
                break
            if neg_at < 0 and any(r[0] == NEG_PRE for r in roles):
                neg_at = cs
            j += 1
        return None if best is None else best[1]

    def _conjunction(self, ms: int, me: int, cues: list, i_before: int, i_after: int,
                     linked: tuple[bool, bool], prev_end: int, next_start: int) -> tuple | None:
        """'X or Y' where Y is no finding of the vocabulary ("atelectasis or scarring"): a connector within
        conjunction_window on a side where the mention is coordinated with no other mention."""
        win = self.cues.conjunction_window
        for j, side_linked in ((i_after, linked[1]), (i_before, linked[0])):
            if side_linked or not 0 <= j < len(cues):
                continue
            cs, ce, g, roles = cues[j]
            dist = cs - me if j == i_after else ms - ce
            if 0 <= dist <= win and (ce <= next_start if j == i_after else cs >= prev_end):
                for r in roles:
                    if r[0] == CONJ:
                        return (r[2], g)
        return None

    def _modifier(self, text: str, low: str, cues: list, i_before: int, i_after: int, ms: int, me: int,
                  role: int, win: int, lo: int, hi: int, has_next: bool) -> tuple | None:
        """The severity / change word (``role``) of a mention: (role tuple, word as written, its start).

        Before the mention: the nearest such word that modifies it (``_premodifies``), after the previous mention
        (``lo``). After it: the nearest such word before the next mention (``hi``) that is no modifier of that next
        mention ("the heart is enlarged, with worsening edema": the change is the edema's), with no terminator and
        no barrier word ("with") in between. The nearer of the two wins (the one before on a tie)."""
        best = None
        k = i_before + 1
        if k < len(cues) and cues[k][0] < ms < cues[k][1] and cues[k][0] >= lo:
            # a modifier phrase that runs into the mention ("mildly enlarged" + "enlarged heart")
            r = next((r for r in cues[k][3] if r[0] == role), None)
            if r is not None:
                return (r, cues[k][2], cues[k][0])
        j = i_before
        while j >= 0:
            cs, ce, g, roles = cues[j]
            if ms - ce > win or cs < lo:
                break
            r = next((r for r in roles if r[0] == role), None)
            if r is not None:
                if self._premodifies(text, cues, j, ms):
                    best = (ms - ce, r, g, cs)
                    if role == SEV:  # several sizes in one noun phrase: the largest ("moderate right and small
                        # left effusions")
                        j2 = j - 1
                        while j2 >= 0 and cues[j2][0] >= lo and ms - cues[j2][1] <= win:
                            r2 = next((x for x in cues[j2][3] if x[0] == SEV), None)
                            if r2 is None or not self._premodifies(text, cues, j2, ms):
                                break
                            if _SEV_RANK[r2[1][0]] > _SEV_RANK[best[1][1][0]]:
                                best = (best[0], r2, cues[j2][2], cues[j2][0])
                            j2 -= 1
                break
            if any(x[0] == TERM for x in roles):
                break
            j -= 1
        j = i_after
        barriers = self.cues.mod_barriers
        while j < len(cues):
            cs, ce, g, roles = cues[j]
            if cs - me > win or ce > hi:
                break
            if best is not None and cs - me >= best[0]:
                break
            r = next((r for r in roles if r[0] == role), None)
            if r is not None:
                if has_next and self._premodifies(text, cues, j, hi):
                    break
                if barriers is not None and barriers.search(low, me, cs):
                    break
                if _starts_conjunct(low[me:cs]):
                    break  # "congestion and increased opacities": the word opens another conjunct
                best = (cs - me, r, g, cs)
                break
            if any(x[0] == TERM for x in roles):
                break
            j += 1
        return None if best is None else (best[1], best[2], best[3])

    def _premodifies(self, text: str, cues: list, j: int, target: int) -> bool:
        """Does the modifier cue ``cues[j]`` stand in the noun phrase of the mention starting at ``target``?
        At most max_words other words between (max_words_after_preposition after "no change in", "increase in"),
        other modifier words allowed, no verb, no connector or barrier word, no other cue, and a comma only before
        another modifier ("stable, mild cardiomegaly")."""
        c = self.cues
        _cs, ce, g, _roles = cues[j]
        if target - ce > 120:
            return False
        last = g.lower().split()[-1] if g.strip() else ""
        limit = c.mod_max_words_prep if last in c.mod_prepositions else c.mod_max_words
        mod_starts = set()
        pieces = []
        pos = ce
        k = j + 1
        while k < len(cues) and cues[k][0] < target:
            ks, ke, _kg, kroles = cues[k]
            if kroles and not any(r[0] in _MOD_ROLES for r in kroles):
                return False
            if kroles:
                pieces.append(text[pos:ks])
                mod_starts.add(ks)
                pos = ke
            k += 1
        pieces.append(text[pos:target])
        gap = _DECIMAL_RE.sub("0", text[ce:target])
        if any(ch in ".;:!?" for ch in gap):
            return False
        ci = gap.find(",")
        while ci >= 0:
            nxt = ce + ci + 1
            while nxt < target and text[nxt] in " \t\r\n":
                nxt += 1
            if nxt not in mod_starts:
                return False
            ci = gap.find(",", ci + 1)
        words = _WORD_RE.findall(" ".join(pieces).lower())
        if len(words) > limit:
            return False
        # a connector only between two words of the noun phrase ("small right and left effusions"), not right
        # after the modifier ("the effusion has increased and atelectasis")
        if words and (words[0] in _CONNECTORS or any(w in ("but", "nor") for w in words)):
            return False
        rest = " ".join(words)
        if _FINITE_RE.search(rest):
            return False
        return c.mod_barriers is None or not c.mod_barriers.search(rest)

    # ------------------------------------------------------------------ template labels
    def _labels(self, text: str, s0: int, s1: int) -> list[tuple[int, int]]:
        """Template labels in ``text[s0:s1]`` as (label start, colon position), in text order."""
        out = []
        c = text.find(":", s0, s1)
        while c >= 0:
            ls = self._label_before(text, s0, c)
            if ls >= 0:
                out.append((ls, c))
            c = text.find(":", c + 1, s1)
        return out

    def _label_before(self, text: str, lo: int, c: int) -> int:
        """Start of the template label that ends at the colon ``c``, or -1. Candidates, longest first: the whole
        run of label characters when it opens a line / sentence / list item, the text after a column gap (2+
        spaces), the trailing ALL-CAPS words ("Enlarged LUNGS:")."""
        end = c
        while end > lo and text[end - 1] in " \t":
            end -= 1
        j = end
        lim = max(lo, end - _LABEL_MAX - 1)
        while j > lim and text[j - 1] in _LABEL_CHARS:
            j -= 1
        if j == end:
            return -1
        k = j
        while k < end and text[k] in " \t":
            k += 1
        if (j == lo or text[j - 1] in _LABEL_OPEN) and self._is_label(text[k:end]):
            return k
        for g in _GAP_RE.finditer(text, k, end):
            if g.end() < end and self._is_label(text[g.end():end]):
                return g.end()
        pos, caps = end, -1
        for w in reversed(text[k:end].split(" ")):
            pos -= len(w)
            if w and not (w.isupper() or w in ("/", "&")):
                break
            if w and w.isupper():
                caps = pos
            pos -= 1
        if caps > k and self._is_label(text[caps:end]):
            return caps
        return -1

    def _is_label(self, label: str) -> bool:
        """A template label: a `templates.labels` entry or a vocabulary phrase, or several joined by and / & / "/";
        never a section header."""
        hit = self._label_cache.get(label)
        if hit is None:
            key = norm_phrase(label)
            names = self.cues.template_labels
            lookup = self.lex.table.lookup
            hit = (0 < len(key) <= _LABEL_MAX and key not in self.cues.section_names
                   and all(part and (part in names or bool(lookup(part)))
                           for part in ([key] if key in names or lookup(key) else _LABEL_SPLIT_RE.split(key))))
            if len(self._label_cache) < 4096:
                self._label_cache[label] = hit
        return hit

    # ------------------------------------------------------------------ per sentence: coordination, differentials
    def _links(self, low: str, sm: list, cues: list, cue_starts: list[int]) -> list[Link | None]:
        """How each mention of a sentence is joined to the next one (None: not coordinated)."""
        return [self._link(low, sm[i][1], sm[i + 1][0], cues, cue_starts, sm[i][2], sm[i + 1][2])
                for i in range(len(sm) - 1)]

    def _link(self, low: str, me: int, ns: int, cues: list, cue_starts: list[int], pay_a: list,
              pay_b: list) -> Link | None:
        """A coordination between mentions ending at ``me`` and starting at ``ns``: a connector ("and", "or",
        "versus", "and/or", ",", "&", "/") and at most alternatives.max_words other words (modifier words and
        qualifiers aside), no verb, no barrier word ("with"), no status cue or terminator. Words between two
        separators are a list item that names no finding of the vocabulary (``extra``)."""
        c = self.cues
        if ns - me > 60 or not low[me:ns].strip():
            return None
        alt = None
        pieces = []
        pos = me
        k = bisect_left(cue_starts, me)
        while k < len(cues) and cues[k][0] < ns:
            ks, ke, kg, kroles = cues[k]
            if kroles:
                conj = next((r for r in kroles if r[0] == CONJ), None)
                if conj is not None:
                    if alt is None or conj[2] < alt[0]:
                        alt = (conj[2], kg)
                elif not all(r[0] in (SEV, CHG, QUAL) for r in kroles):
                    return None
                pieces.append(low[pos:ks])
                pos = ke
            k += 1
        pieces.append(low[pos:ns])
        rest = " ".join(pieces)
        if any(ch not in _LINK_PUNCT and not ch.isalpha() for ch in rest):
            return None
        words = _WORD_RE.findall(rest)
        has_and = "and" in words
        if alt is None and not (has_and or "," in rest or "&" in rest or "/" in rest):
            return None
        if sum(1 for w in words if w not in ("and", "either", "nor")) > c.alt_max_words:
            return None
        if _FINITE_RE.search(rest) or (c.mod_barriers is not None and c.mod_barriers.search(rest)):
            return None
        if alt is None and rest.strip() == "/":
            if {q[0] for q in pay_a} & {q[0] for q in pay_b}:
                return Link(False, 1.0, "", False)  # one class named twice: "tubes/lines"
            return Link(True, c.slash_p, "/", False)
        items = _SEP_RE.split(rest)
        extra = sum(1 for x in items[1:-1] if _WORD_RE.search(x))
        if alt is not None:
            return Link(True, alt[0], alt[1], has_and, extra)
        return Link(False, 1.0, "", has_and, extra)

    @staticmethod
    def _runs(links: list[Link | None], coordinated: bool = False) -> list[tuple[int, int]]:
        """Maximal runs (first, last mention index) of linked mentions. ``coordinated``: noun-phrase
        coordinations only -- a run ends with "and", "or" or another connector ("A, B and C"); a comma with no
        connector after it in the run separates ("likely atelectasis, pneumonia less likely")."""
        out = []
        i, n = 0, len(links)
        while i < n:
            if links[i] is None:
                i += 1
                continue
            j = i
            while j < n and links[j] is not None:
                j += 1
            if not coordinated:
                out.append((i, j))
            else:
                a = i
                while a < j:
                    b = a
                    last = -1
                    while b < j:
                        lk = links[b]
                        if lk.alt or lk.has_and:  # type: ignore[union-attr]
                            last = b
                        b += 1
                    if last < 0:
                        break
                    out.append((a, last + 1))
                    a = last + 1
            i = j + 1
        return out

    def _differentials(self, low: str, sm: list, links: list[Link | None], ss: int,
                       se: int) -> dict[int, tuple]:
        """Mention index -> (p cap, connector, index of the differential's first member, favour) for the members
        of each differential of a sentence (favour: None; set by ``_favour_references``). A run of
        coordinated mentions is cut at each plain "and"; a part with a differential connector is a differential;
        a sign before a comma ("opacity, atelectasis or pneumonia") is the thing explained, no member."""
        c = self.cues
        res: dict[int, tuple] = {}
        for a0, b0 in self._runs(links):
            a = a0
            for k in range(a0, b0 + 1):
                if k < b0 and (links[k].alt or not links[k].has_and):  # type: ignore[union-attr]
                    continue
                alts = [links[x] for x in range(a, k) if links[x].alt]  # type: ignore[union-attr]
                if alts:
                    first = a
                    if not links[a].alt and low[sm[a][0]:sm[a][1]].split()[-1] in c.alt_signs:  # type: ignore
                        first = a + 1
                    n = k - first + 1 + sum(links[x].extra for x in range(first, k))  # type: ignore[union-attr]
                    lead = sm[first - 1][1] if first > 0 else ss
                    if self._alt_lead is not None and self._alt_lead.search(low, lead, sm[first][0]):
                        n += 1
                    trail = sm[k + 1][0] if k + 1 < len(sm) else se
                    if self._alt_trail is not None and self._alt_trail.match(low, sm[k][1], trail):
                        n += 1
                    if n >= 2:
                        p = min(x.p for x in alts)  # type: ignore[union-attr]
                        if c.alt_spread and n >= 3:
                            p = min(p, round(1.0 / n, 4))
                        for x in range(first, k + 1):
                            res[x] = (p, alts[0].cue, first, None)  # type: ignore[union-attr]
                a = k + 1
        return res

    @staticmethod
    def _favour_references(sm: list, cues: list, alts: dict[int, tuple]) -> None:
        """Mark the member a reference cue points to ("A versus B, the former favored") as favoured (in place)."""
        for cs, _ce, g, roles in cues:
            r = next((r for r in roles if r[0] == REF), None)
            if r is None:
                continue
            members = [x for x in alts if sm[x][1] <= cs]
            if not members:
                continue
            gid = alts[max(members)][2]
            group = sorted(x for x in alts if alts[x][2] == gid)
            x = group[r[1]]
            alts[x] = (*alts[x][:3], (r[2], g))

    def _sentence_cues(self, low: str, sm: list, cues: list, links: list[Link | None] | None,
                       se: int) -> list:
        """Resolve predicative hedges and comparatives of one sentence into plain pre / post roles.

        A predicative hedge ("pneumothorax is thought less likely") becomes a post hedge that reaches its subject
        only (the mention before it and the mentions coordinated with it), when the words in between are frame
        words and the hedge ends its clause; otherwise it stays a pre hedge. A comparative ("A is favored over
        B") becomes a pre hedge with its ``after`` p and, with a ``before`` p, a post hedge on its subject; one
        that needs a favour cue is dropped without one."""
        c = self.cues
        out = list(cues)
        favour_seen = False
        for k, (cs, ce, g, roles) in enumerate(cues):
            is_favour = _canon(g) in c.favor_cues
            if not any(r[0] in (UNC_PRED, COMP) for r in roles):
                favour_seen = favour_seen or is_favour
                continue
            new = [r for r in roles if r[0] not in (UNC_PRED, COMP)]
            for r in roles:
                if r[0] == UNC_PRED:
                    reach = self._subject(low, sm, cues, links, k, r[1], se)
                    if reach is not None:
                        new = [x for x in new if x[0] != UNC_PRE] + [(UNC_POST, reach, r[2])]
                elif r[0] == COMP:
                    before, needs_favour = r[1]
                    if needs_favour and not favour_seen:
                        continue
                    new.append((UNC_PRE, None, r[2]))
                    if before is not None:
                        reach = self._subject(low, sm, cues, links, k, True, -1)
                        if reach is not None:
                            new.append((UNC_POST, reach, before))
            out[k] = (cs, ce, g, new)
            favour_seen = favour_seen or is_favour
        return out

    def _subject(self, low: str, sm: list, cues: list, links: list[Link | None] | None, k: int, bare: bool,
                 se: int) -> frozenset[int] | None:
        """Starts of the mentions a hedge ``cues[k]`` written after them is predicated of, or None. The words
        between the last mention before the cue and the cue must be predicative frame words (at least one unless
        ``bare``), with no other cue; with ``se`` >= 0 the cue must also end its clause."""
        c = self.cues
        cs, ce = cues[k][0], cues[k][1]
        i = len(sm) - 1
        while i >= 0 and sm[i][1] > cs:
            i -= 1
        if i < 0:
            return None
        me = sm[i][1]
        if k > 0 and cues[k - 1][1] > me and cues[k - 1][3]:
            return None
        gap = low[me:cs]
        if any(ch not in _LINK_PUNCT and not ch.isalpha() for ch in gap):
            return None
        words = _WORD_RE.findall(gap)
        # the predicate (frame words) may follow a short phrase that places the finding ("atelectasis at the right
        # base is likely"): no verb, no barrier word, at most pred_max_prefix words
        t = len(words)
        while t > 0 and words[t - 1] in c.pred_frame_words:
            t -= 1
        if t:
            prefix = " ".join(words[:t])
            if (t > c.pred_max_prefix or (t == len(words) and not bare) or _FINITE_RE.search(prefix)
                    or (c.mod_barriers is not None and c.mod_barriers.search(prefix))):
                return None
        elif not bare and not words:
            return None
        if se >= 0:
            end = se
            for x in cues[k + 1:]:
                if any(r[0] == TERM for r in x[3]):
                    if _canon(x[2]) in c.hedge_crosses and not low[ce:x[0]].strip():
                        return None  # "atelectasis is likely related to ...": the hedge is on the cause
                    end = x[0]
                    break
            rest = low[ce:end]
            cut = min((q for q in (rest.find(","), rest.find(";"), rest.find(")")) if q >= 0), default=-1)
            if cut >= 0:
                rest = rest[:cut]
            rest = rest.strip(" \t\r\n.!?")
            if rest and not any(rest.startswith(f) and (len(rest) == len(f) or not rest[len(f)].isalnum())
                                for f in c.pred_followed_by):
                return None
        j = i
        if links is not None:
            for a, b in self._runs(links, coordinated=True):
                if a < i <= b:
                    j = a
        return frozenset(sm[x][0] for x in range(j, i + 1))

    def _share(self, low: str, sm: list, links: list[Link | None], spans: list[list[Mention]]) -> None:
        """Modifier scope over coordinated mentions (in place): a severity / change word before the first member
        reaches the members that have none of their own; one after the last member reaches them too when no verb
        or a plural verb stands between ("cardiomegaly and edema have worsened"). A differential frame's list
        ("the differential includes A, B and C") spreads belief like a differential."""
        c = self.cues
        for a, b in self._runs(links, coordinated=True):
            members = [m for k in range(a, b + 1) for m in spans[k] if m.status != "negative"]
            if len(members) < 2:
                continue
            # members introduced by "adjacent", "associated", ... are noun phrases of their own
            takers = [m for k in range(a, b + 1) for m in spans[k] if m.status != "negative"
                      and (k == a or not c.mod_own_phrase.intersection(_WORD_RE.findall(low, sm[k - 1][1], sm[k][0])))]
            for sev in (True, False):
                src = None
                for m in spans[a]:
                    at = m.sev_at if sev else m.chg_at
                    if 0 <= at < m.start:
                        cue = m.severity_cue if sev else m.change_cue
                        if _canon(cue) not in c.mod_not_shared:
                            src = m
                            break
                if src is None:
                    for m in spans[b]:
                        at = m.sev_at if sev else m.chg_at
                        if at > m.end:
                            verbs = _FINITE_RE.findall(low, sm[b][1], at)
                            if all(v in c.mod_plural_verbs for v in verbs):
                                cue = m.severity_cue if sev else m.change_cue
                                if _canon(cue) not in c.mod_not_shared:
                                    src = m
                                    break
                if src is None:
                    continue
                for m in takers:
                    if sev and m.severity == "none":
                        m.severity, m.severity_cue, m.severity_typ = src.severity, src.severity_cue, src.severity_typ
                    elif not sev and m.change == "none":
                        m.change, m.change_cue = src.change, src.change_cue
            n = b - a + 1
            if c.alt_spread and n >= 3 and all(_canon(m.cue) in c.alt_frames for m in members):
                cap = round(1.0 / n, 4)
                for m in members:
                    if m.p > cap:
                        m.p, m.status = cap, "uncertain"

    # ------------------------------------------------------------------ per report
    def mine_mentions(self, text: str) -> tuple[list[Mention], bool]:
        """All resolved mentions of a report (text order) and whether an other-abnormality blocker was asserted."""
        low = text.lower()
        if len(low) != len(text):  # a few Unicode capitals lower to 2 chars; keep offsets aligned
            low = "".join(ch.lower()[:1] or ch for ch in text)
        out: list[Mention] = []
        blocked = False
        for s0, s1 in select_sections(text, self.sections):
            found = self._mentions(text, low, s0, s1)
            if not found:
                continue
            fi, nf = 0, len(found)
            sents = split_sentences(text, s0, s1, self._abbrev)
            labels = self._labels(text, s0, s1) if text.find(":", s0, s1) >= 0 else None
            label_colons: frozenset[int] | dict[int, int] = frozenset()
            if labels:
                sents = _split_at(text, sents, [ls for ls, _c in labels])
                label_colons = {c: ls for ls, c in labels}
                label_at = {ls: c for ls, c in labels}
            for ss, se in sents:
                while fi < nf and found[fi][0] < ss:
                    fi += 1
                fj = fi
                while fj < nf and found[fj][1] <= se:
                    fj += 1
                if fj == fi:
                    continue
                sm = found[fi:fj]
                fi = fj
                cues = self._cues(text, low, ss, se, label_colons)
                cue_starts = [x[0] for x in cues]
                m_starts = [x[0] for x in sm]
                # a template label whose whole value is a negative word: "Pneumothorax: no." -> negative
                neg_end, neg_cue = -1, ""
                if labels and ss in label_at:
                    val = norm_phrase(text[label_at[ss] + 1:se].strip(" \t\r\n.,;!"))
                    if val in self.cues.template_negative:
                        neg_end, neg_cue = label_at[ss], val
                links = self._links(low, sm, cues, cue_starts) if len(sm) > 1 else None
                special = self._special
                if special and any(id(x[3]) in special for x in cues):
                    cues = self._sentence_cues(low, sm, cues, links, se)
                alts = self._differentials(low, sm, links, ss, se) if links else None
                if alts and any(r[0] == REF for x in cues for r in x[3]):
                    self._favour_references(sm, cues, alts)
                spans: list[list[Mention]] = []
                for idx, (ms, me, payload) in enumerate(sm):
                    prev_end = sm[idx - 1][1] if idx > 0 else ss
                    next_start = sm[idx + 1][0] if idx + 1 < len(sm) else se
                    linked = ((idx > 0 and links[idx - 1] is not None, idx + 1 < len(sm) and links[idx] is not None)
                              if links else (False, False))
                    span: list[Mention] = []
                    for cls, kind, p in payload:
                        mm = self._resolve(text, low, ms, me, cls, kind, p, cues, cue_starts,
                                           prev_end, next_start, ss, se, m_starts,
                                           alts.get(idx) if alts else None, linked)
                        if mm is None:
                            continue
                        if me <= neg_end:
                            mm.status, mm.p, mm.cue = "negative", 0.0, neg_cue
                        if kind == BLOCKER:
                            if mm.status != "negative":
                                blocked = True
                            continue
                        span.append(mm)
                    spans.append(span)
                if links:
                    self._share(low, sm, links, spans)
                for span in spans:
                    out.extend(span)
        return out, blocked

    def mine_rows(self, text: Any, study_id: str = "") -> list[tuple]:
        """Findings rows (tuples in FINDINGS_COLUMNS order) for one report; [] for empty/NaN text."""
        if not isinstance(text, str) or not text.strip():
            return []
        mentions, blocked = self.mine_mentions(text)
        by_cls: dict[int, list[Mention]] = {}
        for m in mentions:
            by_cls.setdefault(m.cls, []).append(m)
        nf = self.lex.no_finding
        rows = [self._merge(text, study_id, cls, by_cls[cls]) for cls in sorted(by_cls) if cls != nf]
        if nf >= 0 and not blocked and any(ch.isalnum() for ch in text):
            ignore = {self.classes[i] for i in self.lex.no_finding_ignore}
            if all(r[2] == "negative" or r[1] in ignore for r in rows):
                nf_row = (study_id, self.classes[nf], "positive", 1.0, "", "none", "", "none", "", "typical",
                          "", 0, 0, 0, "rules", self.lexicon_version)
                rows.append(nf_row)
                rows.sort(key=lambda r: self.lex.class_index[r[1]])
        return rows

    def _merge(self, text: str, study_id: str, cls: int, ms: list[Mention]) -> tuple:
        """Merge one class's mentions: status positive > uncertain > negative; then highest certainty."""
        best = max(ms, key=lambda m: (_STATUS_RANK[m.status], m.p, -m.start))
        same = [m for m in ms if m.status == best.status]
        sev = max(same, key=lambda m: (_SEV_RANK[m.severity], m is best))
        severity, severity_cue, sev_typ = sev.severity, sev.severity_cue, sev.severity_typ
        chg = best if best.change != "none" else next((m for m in same if m.change != "none"), best)
        typ = ""
        if best.status != "negative":
            typ = sev_typ or _CHANGE_TYP.get(chg.change, "typical")
        return (study_id, self.classes[cls], best.status, round(best.p, 4), best.cue, severity, severity_cue,
                chg.change, chg.change_cue, typ, text[best.s_start:best.s_end], best.start, best.end,
                len(ms), "rules", self.lexicon_version)

    def mine_report(self, text: Any, study_id: str = "") -> list[dict[str, Any]]:
        """Findings of one report as a list of dicts (FINDINGS_SCHEMA columns)."""
        return [dict(zip(FINDINGS_COLUMNS, r, strict=False)) for r in self.mine_rows(text, study_id)]


def _starts_conjunct(gap: str) -> bool:
    """Does a connector ("and", "or") in ``gap`` (between a mention and a modifier after it) come before any verb,
    so that the modifier opens another conjunct ("effusion and increased opacities"; not "effusion is small and
    stable")?"""
    for w in _WORD_RE.findall(gap):
        if w in _CONNECTORS:
            return True
        if _FINITE_RE.fullmatch(w):
            return False
    return False


def _split_at(text: str, sents: list[tuple[int, int]], starts: list[int]) -> list[tuple[int, int]]:
    """Sentence spans split again before each template label start (``starts`` sorted)."""
    out: list[tuple[int, int]] = []
    k, n = 0, len(starts)
    for ss, se in sents:
        while k < n and starts[k] <= ss:
            k += 1
        cur = ss
        while k < n and starts[k] < se:
            head = text[cur:starts[k]].rstrip()
            if head:
                out.append((cur, cur + len(head)))
            cur = starts[k]
            k += 1
        out.append((cur, se))
    return out


@lru_cache(maxsize=16)
def get_miner(vocab: str = "chexpert14", sections: tuple[str, ...] | None = None,
              cues: str | None = None) -> RuleMiner:
    """A cached RuleMiner (compiled once per process)."""
    return RuleMiner(vocab, sections, cues)
