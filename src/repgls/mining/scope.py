"""Sentence structure for the rule miner: coordination, differentials, predicative hedges, modifier scope.

Per sentence (mentions ``sm`` as (start, end, payload) and cues as (start, end, words as written, roles)):
``links`` says how each mention is joined to the next ("and", ",", a differential connector, or not at all);
``differentials`` gives every member of a differential its share of belief; ``sentence_cues`` resolves the
predicative hedges and comparatives into plain pre / post roles; ``modifier`` finds a mention's own severity /
change word and ``share`` spreads a coordinated noun phrase's words over its members. The rules are documented in
cues.yaml (alternatives, predicative, comparatives, favour_references, modifier_scope) and docs/cues.md.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

from repgls.mining.lexicon import (
    CHG,
    COMP,
    CONJ,
    QUAL,
    REF,
    SEV,
    TERM,
    UNC_POST,
    UNC_PRE,
    UNC_PRED,
    Cues,
    phrase_regex,
)

SEV_RANK = {"none": 0, "trace": 1, "mild": 2, "moderate": 3, "severe": 4}
# finite verbs / auxiliaries that head a clause's predicate
FINITE_RE = re.compile(r"\b(?:is|are|was|were|has|have|had|remains?|remained|appears?|appeared|seems?|seemed|"
                       r"persists?|persisted|shows?|showed|demonstrates?|demonstrated|measures?|measured)\b")
_WORD_RE = re.compile(r"[a-z]+")
# auxiliaries and copulas: a noun phrase holds none ("previously demonstrated infiltrates" holds a participle)
_AUX_RE = re.compile(r"\b(?:is|are|was|were|has|have|had|be|been|will|remains?|persists?)\b")
# characters a coordination gap ("A, B and/or C", "A & B") or a predicative frame may hold besides words
_LINK_PUNCT = frozenset(" \t\r\n,/&-()")
_MOD_ROLES = (SEV, CHG)
_DECIMAL_RE = re.compile(r"\d\.\d")
_CONNECTORS = frozenset(("and", "or", "but", "nor"))
# list separators inside a coordination gap (cue spans already cut out and joined by a space)
_SEP_RE = re.compile(r",|&|/|\band\b|\beither\b|\s{2,}")


def canon(cue: str) -> str:
    """The cue in canonical form (lower case, single spaces): "Cannot be\n excluded" -> "cannot be excluded"."""
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


class Scope:
    """The sentence-structure rules of one cue lexicon (compiled once per miner)."""

    def __init__(self, cues: Cues) -> None:
        self.cues = cues
        conn = "|".join(phrase_regex(k) for k in sorted(cues.alt_connectors, key=len, reverse=True))
        # an alternative that names no finding before the first / after the last member of a differential
        self._alt_lead = re.compile(rf"[a-z][\s,]*(?:{conn})(?![\w])[\s,]*$") if conn else None
        self._alt_trail = re.compile(rf"[\s,]*(?:{conn})[\s,]+[a-z]") if conn else None

    def modifier(self, text: str, low: str, cues: list, i_before: int, i_after: int, ms: int, me: int,
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
                            if SEV_RANK[r2[1][0]] > SEV_RANK[best[1][1][0]]:
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
                if starts_conjunct(low[me:ce]):
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
        other modifier words and qualifiers allowed, no auxiliary or copula, no connector or barrier word, no other cue, and a comma only before
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
            if kroles and not any(r[0] in _MOD_ROLES or r[0] == QUAL for r in kroles):
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
        if _AUX_RE.search(rest):
            return False
        return c.mod_barriers is None or not c.mod_barriers.search(rest)

    def links(self, low: str, sm: list, cues: list, cue_starts: list[int]) -> list[Link | None]:
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
        if FINITE_RE.search(rest) or (c.mod_barriers is not None and c.mod_barriers.search(rest)):
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

    def differentials(self, low: str, sm: list, links: list[Link | None], ss: int,
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
    def favour_references(sm: list, cues: list, alts: dict[int, tuple]) -> None:
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

    def sentence_cues(self, low: str, sm: list, cues: list, links: list[Link | None] | None,
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
            is_favour = canon(g) in c.favor_cues
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
            if (t > c.pred_max_prefix or (t == len(words) and not bare) or FINITE_RE.search(prefix)
                    or (c.mod_barriers is not None and c.mod_barriers.search(prefix))):
                return None
        elif not bare and not words:
            return None
        if se >= 0:
            end = se
            for x in cues[k + 1:]:
                if any(r[0] == TERM for r in x[3]):
                    if canon(x[2]) in c.hedge_crosses and not low[ce:x[0]].strip():
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
        # phrases of one noun phrase with nothing between them ("plate-like" + "atelectasis")
        while j > 0 and not low[sm[j - 1][1]:sm[j][0]].strip(" -\t"):
            j -= 1
        return frozenset(sm[x][0] for x in range(j, i + 1))

    def share(self, low: str, sm: list, links: list[Link | None], spans: list[list[Mention]]) -> None:
        """Modifier scope over coordinated mentions (in place): a severity / change word before the first member
        reaches the members that have none of their own; one after the last member reaches them too when no verb
        or a plural verb stands between ("cardiomegaly and edema have worsened"). A differential frame's list
        ("the differential includes A, B and C") spreads belief like a differential."""
        c = self.cues
        for a, b in self._runs(links, coordinated=True):
            # members introduced by "adjacent", "associated", ... are noun phrases of their own
            takers = [m for k in range(a, b + 1) for m in spans[k]
                      if k == a or not c.mod_own_phrase.intersection(_WORD_RE.findall(low, sm[k - 1][1], sm[k][0]))]
            for sev in (True, False):
                src = self._shared_source(low, sm, spans, a, b, sev)
                if src is None:
                    continue
                # a positive's word reaches the positive / uncertain members; a negative's ("the infiltrates and
                # the engorgement have resolved") the negative ones, and only a change
                negative = src.status == "negative"
                for m in takers:
                    if (m.status == "negative") != negative or m is src:
                        continue
                    if sev and not negative and m.severity == "none":
                        m.severity, m.severity_cue, m.severity_typ = src.severity, src.severity_cue, src.severity_typ
                    elif not sev and m.change == "none":
                        m.change, m.change_cue = src.change, src.change_cue
            members = [m for k in range(a, b + 1) for m in spans[k] if m.status != "negative"]
            n = b - a + 1
            if c.alt_spread and n >= 3 and members and all(canon(m.cue) in c.alt_frames for m in members):
                cap = round(1.0 / n, 4)
                for m in members:
                    if m.p > cap:
                        m.p, m.status = cap, "uncertain"

    def _shared_source(self, low: str, sm: list, spans: list[list[Mention]], a: int, b: int,
                       sev: bool) -> Mention | None:
        """The member whose severity (``sev``) or change word the coordinated run ``a..b`` shares: the first
        member's word before it, else the last member's word after it with no verb or a plural verb between."""
        c = self.cues
        for m in spans[a]:
            at = m.sev_at if sev else m.chg_at
            if 0 <= at < m.start and canon(m.severity_cue if sev else m.change_cue) not in c.mod_not_shared:
                return m
        for m in spans[b]:
            at = m.sev_at if sev else m.chg_at
            if at > m.end and all(v in c.mod_plural_verbs for v in FINITE_RE.findall(low, sm[b][1], at)):
                if canon(m.severity_cue if sev else m.change_cue) not in c.mod_not_shared:
                    return m
        return None


def starts_conjunct(gap: str) -> bool:
    """Does a connector ("and", "or") in ``gap`` (between a mention and a modifier after it) open another conjunct
    that the modifier belongs to ("effusion and increased opacities")? Not when a verb comes first ("effusion is
    small and stable") or follows the connector ("infiltrates and engorgement have resolved": the predicate)."""
    words = _WORD_RE.findall(gap)
    seen_conn = False
    for w in words:
        if FINITE_RE.fullmatch(w):
            return False
        if w in _CONNECTORS:
            seen_conn = True
    return seen_conn
