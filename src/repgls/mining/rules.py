"""The rule-based report miner: phrases + cue scopes -> graded findings (FINDINGS_SCHEMA rows).

Per report: (1) optional section selection, (2) regex sentence split, plus a split before each template label
("HEART: Enlarged.", "Tubes/lines: none."; labels from cues.yaml ``templates`` or vocabulary phrases, whose colon
is no terminator), (3) one alternation regex finds all finding mentions and one finds all cues (both precompiled
per vocabulary), (4) per sentence (``repgls.mining.scope``): how neighbouring mentions are coordinated, which of
them form a differential and the share of each member, and the predicative hedges / comparatives resolved into
plain roles ("pneumothorax is thought less likely", "A is favored over B"), (5) per mention, within its
sentence: status from the nearest status cue before it (forward scope ends at a terminator or ";"/":"; a
hedge's scope crosses causal connectors, a hypothetical frame overrides a nearer hedge) or after it (within
``post_window`` characters, or further back over the subject of the cue's clause), in CheXpert's order:
negation-looking doubt ("cannot be excluded", "no new") -> negation -> hedge (incl. hypothetical frames);
a member of a differential takes at most its share ("or" 0.39, "versus" 0.31, 1/n of an n-way list; a favoured
member is exempt); severity and change from the word that modifies the mention (its noun phrase before it, its
clause after it), then shared over a coordinated noun phrase, (6) mentions of one finding are merged (positive >
uncertain > negative, then the most certain cue), (7) "No Finding" (chexpert14) is added when nothing but ignored
classes is positive or uncertain and no other abnormality ("blockers") is asserted.

Certainty values and their sources: vocab/cues.yaml and docs/cues.md; merge rules: docs/mining.md.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from functools import lru_cache
from typing import Any

from repgls.mining.lexicon import (
    ATTR,
    BLOCKER,
    CHG,
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
    UNC_PRE,
    UNC_PRED,
    UNMENTION,
    USYN,
    VocabLexicon,
    compile_vocab,
    norm_phrase,
)
from repgls.mining.schema import FINDINGS_COLUMNS
from repgls.mining.scope import FINITE_RE, SEV_RANK, Mention, Scope, canon
from repgls.mining.sections import select_sections, split_sentences

_STATUS_RANK = {"negative": 0, "uncertain": 1, "positive": 2}
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
        self.scope = Scope(self.cues)

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
        pre, pre_at = self._status_before(cues, i_before, ms)
        post = self._status_after(text, cues, i_after, ms, me, m_starts)
        # ---- qualifiers for attribute mentions ("heart size" + normal/enlarged)
        status, p, cue = "positive", base_p, ""
        sev_level, sev_cue, sev_typ, sev_at = "none", "", "", -1
        if kind == ATTR:
            qual = self._qualifier(text, cls, ms, me, cues, i_before, i_after)
            if qual is None:
                return None
            (_qgroup, qkind), qp, qg = qual
            if qkind == "normal":
                status, p, cue = "negative", 0.0, canon(qg)
            elif qkind == "borderline":
                status, p, cue = "uncertain", qp, canon(qg)
                sev_level, sev_cue, sev_typ = "trace", qg, "atypical"
        elif kind == USYN:
            status, cue = ("uncertain" if base_p < c.positive_threshold else "positive"), canon(text[ms:me])
        # ---- combine status cues (CheXpert order: pseudo-negation -> negation -> hedge)
        roles_found = [x for x in (pre, post) if x is not None]
        pseudo = [x for x in roles_found if x[0][0] in (PSEUDO_PRE, PSEUDO_POST)]
        neg = [x for x in roles_found if x[0][0] in (NEG_PRE, NEG_POST)]
        hedge = [x for x in roles_found if x[0][0] in HEDGE_ROLES]
        if pseudo:
            r, g = pseudo[0]
            status, p, cue = "uncertain", r[2], canon(g)
        elif neg:
            r, g = neg[0]
            status, p, cue = "negative", 0.0, canon(g)
        elif hedge and status != "negative":
            r, g = min(hedge, key=lambda x: x[0][2])
            p = min(p, r[2]) if status == "uncertain" else r[2]
            cue = canon(g)
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
                    p, cue = fp, canon(fg)
                status = "positive" if p >= c.positive_threshold else "uncertain"
            elif conj is not None and conj[0] < p:
                favoured = (pre is not None and pre in hedge and canon(pre[1]) in c.favor_cues
                            and (not m_starts or bisect_left(m_starts, pre_at) == bisect_left(m_starts, ms)))
                if not favoured:
                    # the cue stays the written hedge when it is a hedge of its own ("may reflect atelectasis or
                    # pneumonia"); the connector when there is none or the hedge states a positive ("consistent
                    # with atelectasis or pneumonia" is a plain differential)
                    keep = bool(hedge) and p < c.positive_threshold
                    status, p, cue = "uncertain", conj[0], (cue if keep else canon(conj[1]))
        # ---- severity and change: a word before the mention that modifies it, or one after it in its clause
        if sev_level == "none":
            sv = self.scope.modifier(text, low, cues, i_before, i_after, ms, me, SEV, c.severity_window,
                                max(prev_end, s_start), min(next_start, s_end), next_start < s_end)
            if sv is not None:
                (sev_level, sev_typ), sev_cue, sev_at = sv[0][1], sv[1], sv[2]
        chg, chg_cue, chg_at = "none", "", -1
        ch = self.scope.modifier(text, low, cues, i_before, i_after, ms, me, CHG, c.change_window,
                            max(prev_end, s_start), min(next_start, s_end), next_start < s_end)
        if ch is not None:
            chg, chg_cue, chg_at = ch[0][1], ch[1], ch[2]
        return Mention(cls, status, float(p), cue, sev_level, sev_cue, sev_typ, chg, chg_cue,
                       ms, me, s_start, s_end, sev_at, chg_at)

    def _status_before(self, cues: list, i_before: int, ms: int) -> tuple[tuple | None, int]:
        """The status cue before a mention that covers it (forward scope), as ((role, words), its end) or
        (None, -1)."""
        c = self.cues
        pre = None
        pre_at = -1
        # The nearest status cue wins, except: a linking hedge inside a negation is negated ("no consolidation
        # concerning for pneumonia"); a hypothetical frame further back overrides a nearer hedge ("to evaluate for possible pneumonia"); a hedge's scope crosses causal
        # connectors ("possibly related to X versus Y", "may be secondary to X or Y"), a negation's does not.
        j = i_before
        crossed = False
        while j >= 0:
            _cs, ce, g, roles = cues[j]
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
                if canon(g) in c.hedge_crosses and (pre is None or pre[0][0] != NEG_PRE):
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
                    if not crossed and canon(pre[1]) in c.linking_hedges:
                        pre = (hit, g)
                    break
                elif hit[0] == HYP_PRE:
                    pre = (hit, g)
                    break
                else:
                    break
            j -= 1
        return pre, pre_at

    def _status_after(self, text: str, cues: list, i_after: int, ms: int, me: int,
                      m_starts: list[int] | None) -> tuple | None:
        """The status cue after a mention that reaches back to it, as (role, words as written) or None."""
        c = self.cues
        post = None
        # Backward scope: within post_window characters, or further when the cue is in the predicate of the clause
        # whose subject holds the mention ("The nodules and masses seen on the prior
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
        return post

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
        v = FINITE_RE.search(gap)
        if v is not None and m_starts:
            k = bisect_left(m_starts, me + v.end())
            if k < len(m_starts) and m_starts[k] < cs:
                return False
        if near:
            return True
        n_verbs = len(FINITE_RE.findall(gap)) + (1 if FINITE_RE.match(cue.lower()) else 0)
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
                if ("," in gap or ";" in gap) and not FINITE_RE.search(gap.lower()):
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
                links = self.scope.links(low, sm, cues, cue_starts) if len(sm) > 1 else None
                if links is not None and all(lk is None for lk in links):
                    links = None
                special = self._special
                if special and any(id(x[3]) in special for x in cues):
                    cues = self.scope.sentence_cues(low, sm, cues, links, se)
                alts = (self.scope.differentials(low, sm, links, ss, se)
                        if links and any(lk is not None and lk.alt for lk in links) else None)
                if alts and any(r[0] == REF for x in cues for r in x[3]):
                    self.scope.favour_references(sm, cues, alts)
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
                    self.scope.share(low, sm, links, spans)
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
        sev = max(same, key=lambda m: (SEV_RANK[m.severity], m is best))
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
