"""Rule miner: hedge constructions, differentials, change that leaves something behind, modifier scope (issue #12).

Sentences written for repgls (no patient text). Each construction is checked with several phrasings in both the
chexpert14 and the nih14 vocabularies.
"""

from __future__ import annotations

import pytest

from repgls.mining import mine_report
from repgls.mining.lexicon import load_cues

VOCABS = ("chexpert14", "nih14")
# class names that differ between the vocabularies
EFF = {"chexpert14": "Pleural Effusion", "nih14": "Effusion"}


def by_finding(text: str, vocab: str = "chexpert14") -> dict[str, dict]:
    return {f["finding"]: f for f in mine_report(text, vocab=vocab)}


def name(cls: str, vocab: str) -> str:
    return EFF[vocab] if cls == "Effusion" else cls


def p_of(text: str, cls: str, vocab: str) -> float:
    return by_finding(text, vocab)[name(cls, vocab)]["certainty"]


# ----------------------------------------------------------------------------- the issue's table
@pytest.mark.parametrize("vocab", VOCABS)
def test_issue_table_hedges(vocab: str) -> None:
    f = by_finding("Findings raise the possibility of early pneumonia.", vocab)["Pneumonia"]
    assert f["status"] == "uncertain" and f["certainty"] < 0.42  # a weak hedge: below "could be"
    f = by_finding("Pneumothorax is thought less likely.", vocab)["Pneumothorax"]
    assert f["status"] == "uncertain" and f["certainty"] <= 0.2
    g = by_finding("Atelectasis is favored; pneumonia is considered less likely.", vocab)
    assert g["Pneumonia"]["status"] == "uncertain" and g["Pneumonia"]["certainty"] <= 0.2
    assert g["Atelectasis"]["certainty"] > g["Pneumonia"]["certainty"]


@pytest.mark.parametrize("vocab", VOCABS)
def test_issue_table_partial_clearing(vocab: str) -> None:
    f = by_finding("Left lower lobe consolidation has partially cleared.", vocab)
    c = f["Consolidation"]
    assert (c["status"], c["change"], c["typicality"]) == ("positive", "improved", "atypical")
    assert "No Finding" not in f


@pytest.mark.parametrize("vocab", VOCABS)
def test_issue_table_modifier_scope(vocab: str) -> None:
    f = by_finding("Moderate cardiomegaly and pulmonary edema.", vocab)
    assert f["Cardiomegaly"]["severity"] == "moderate" and f["Edema"]["severity"] == "moderate"
    f = by_finding("Small bilateral effusions and bibasilar atelectasis.", vocab)
    assert f[name("Effusion", vocab)]["severity"] == "mild" and f["Atelectasis"]["severity"] == "mild"
    f = by_finding("The heart is enlarged, with worsening interstitial edema.", vocab)
    assert f["Cardiomegaly"]["status"] == "positive" and f["Cardiomegaly"]["change"] == "none"
    assert f["Edema"]["change"] == "worsened"


# ----------------------------------------------------------------------------- verb and noun frames
@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text,cls", [
    ("Findings raise the possibility of early pneumonia.", "Pneumonia"),
    ("The appearance raises the possibility of a small pneumothorax.", "Pneumothorax"),
    ("These changes raised the possibility of pulmonary edema.", "Edema"),
    ("Patchy opacity, raising the possibility of atelectasis.", "Atelectasis"),
    ("There is the possibility of a small left effusion.", "Effusion"),
])
def test_possibility_frames_are_a_weak_hedge(vocab: str, text: str, cls: str) -> None:
    f = by_finding(text, vocab)[name(cls, vocab)]
    assert f["status"] == "uncertain" and "possibility" in f["cue"]
    # Lunguage++ ranks "possibility" below "possible" and "could be"
    assert f["certainty"] < p_of(f"Possible {cls.lower()}.", cls, vocab)


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text", [
    "The differential includes atelectasis, pneumonia and edema.",
    "Differential diagnosis includes atelectasis, pneumonia, or edema.",
    "Differential considerations include atelectasis and pneumonia.",
    "Diagnostic considerations would include pneumonia or atelectasis.",
])
def test_differential_frames(vocab: str, text: str) -> None:
    f = by_finding(text, vocab)
    for cls in ("Atelectasis", "Pneumonia"):
        assert f[cls]["status"] == "uncertain", (cls, f[cls])
        assert f[cls]["certainty"] < p_of(f"This could be {cls.lower()}.", cls, vocab)
    if "edema" in text:
        assert f["Edema"]["status"] == "uncertain"


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text,fav,other", [
    ("Atelectasis is favored over pneumonia.", "Atelectasis", "Pneumonia"),
    ("Favor atelectasis over pneumonia.", "Atelectasis", "Pneumonia"),
    ("Pneumonia is favored over atelectasis.", "Pneumonia", "Atelectasis"),
    ("Findings favoring edema over pneumonia.", "Edema", "Pneumonia"),
    ("Atelectasis is more likely than pneumonia.", "Atelectasis", "Pneumonia"),
    ("Pneumonia is less likely than atelectasis.", "Atelectasis", "Pneumonia"),
    ("Likely atelectasis rather than pneumonia.", "Atelectasis", "Pneumonia"),
])
def test_favoured_over(vocab: str, text: str, fav: str, other: str) -> None:
    f = by_finding(text, vocab)
    assert f[other]["status"] == "uncertain" and f[other]["certainty"] <= 0.2, f[other]
    assert f[fav]["certainty"] >= 0.7, f[fav]


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text,cls", [
    ("Pneumothorax is thought less likely.", "Pneumothorax"),
    ("Pneumonia is considered less likely.", "Pneumonia"),
    ("A pleural effusion is felt to be unlikely.", "Effusion"),
    ("Edema is thought to be very unlikely at this time.", "Edema"),
    ("Pneumonia is not favored.", "Pneumonia"),
    ("Atelectasis is not favored given the volumes.", "Atelectasis"),
])
def test_copula_split_negative_leaning_hedges(vocab: str, text: str, cls: str) -> None:
    f = by_finding(text, vocab)[name(cls, vocab)]
    assert f["status"] == "uncertain" and f["certainty"] <= 0.2, f


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text,cls,lo,hi", [
    ("Pneumonia less likely.", "Pneumonia", 0.1, 0.2),
    ("Left basilar opacity, likely atelectasis, pneumonia less likely.", "Pneumonia", 0.1, 0.2),
    ("Small left effusion, if any.", "Effusion", 0.15, 0.25),
    ("Pleural effusion, if any, is small.", "Effusion", 0.15, 0.25),
    ("Atelectasis at the right base is likely.", "Atelectasis", 0.7, 0.8),
    ("Consolidation is also possible.", "Consolidation", 0.4, 0.5),
    ("Pneumothorax unlikely.", "Pneumothorax", 0.0, 0.1),
    ("Pneumonia is a consideration.", "Pneumonia", 0.25, 0.35),
    ("Pneumonia is a less likely consideration.", "Pneumonia", 0.1, 0.2),
    ("Pneumothorax, if present, is small.", "Pneumothorax", 0.15, 0.25),
    ("Edema is another possibility.", "Edema", 0.25, 0.35),
])
def test_post_posed_hedges(vocab: str, text: str, cls: str, lo: float, hi: float) -> None:
    f = by_finding(text, vocab)[name(cls, vocab)]
    assert f["status"] == "uncertain" and lo <= f["certainty"] <= hi, f


@pytest.mark.parametrize("vocab", VOCABS)
def test_post_posed_hedge_covers_its_coordinated_subject_only(vocab: str) -> None:
    f = by_finding("Pneumothorax, effusion, and pneumonia are unlikely.", vocab)
    for cls in ("Pneumothorax", "Effusion", "Pneumonia"):
        assert f[name(cls, vocab)]["certainty"] < 0.1, cls
    g = by_finding("Mild cardiomegaly with effusion less likely.", vocab)
    assert g["Cardiomegaly"]["status"] == "positive"
    assert g[name("Effusion", vocab)]["status"] == "uncertain"
    h = by_finding("Pneumothorax less likely, small effusion.", vocab)
    assert h[name("Effusion", vocab)]["status"] == "positive"
    assert h["Pneumothorax"]["status"] == "uncertain"


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text,seen,hedged", [
    # the hedge reads forwards (on the finding after it), or on a cause: not on the finding before it
    ("The opacity is likely atelectasis.", None, "Atelectasis"),
    ("Atelectasis is likely related to low lung volumes.", "Atelectasis", None),
    ("Atelectasis at the left base, likely due to hypoventilation.", "Atelectasis", None),
    ("Cardiomegaly, possible pneumonia.", "Cardiomegaly", "Pneumonia"),
    ("Atelectasis is the most likely explanation for the consolidation.", "Consolidation", None),
])
def test_hedges_that_are_not_predicative(vocab: str, text: str, seen: str | None, hedged: str | None) -> None:
    f = by_finding(text, vocab)
    if seen:
        assert f[seen]["status"] == "positive", f[seen]
    if hedged:
        assert f[hedged]["status"] == "uncertain", f[hedged]


@pytest.mark.parametrize("vocab", VOCABS)
def test_plain_words_are_no_comparative_or_alternative(vocab: str) -> None:
    f = by_finding("Pacemaker leads project over the heart. Small effusions on either side.", vocab)
    assert f[name("Effusion", vocab)]["status"] == "positive"
    g = by_finding("Density over the left base consistent with atelectasis. No pneumonia.", vocab)
    assert g["Atelectasis"]["status"] == "positive" and g["Pneumonia"]["status"] == "negative"


# ----------------------------------------------------------------------------- differentials
@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("template", [
    "Right lower lobe {a} versus {b}.",
    "Right lower lobe {a} vs. {b}.",
    "Basilar opacity, {a} or {b}.",
    "Either {a} or {b} at the left base.",
    "Basilar opacities representing {a} and/or {b}.",
    "Patchy left base {a}/{b}.",
    "Findings consistent with {a} or {b}.",
    "The opacity may be {a} or {b}.",
    "This could be {a} or {b}.",
    "Differential includes {a}, {b}, and aspiration.",
])
@pytest.mark.parametrize("a,b", [("atelectasis", "pneumonia"), ("pneumonia", "edema"),
                                 ("consolidation", "atelectasis")])
def test_differential_members_are_less_certain_than_one_modal_hedge(vocab: str, template: str, a: str,
                                                                    b: str) -> None:
    """A differential spreads belief over its members: each is below 'could be X' and 'may be X'."""
    f = by_finding(template.format(a=a, b=b), vocab)
    for word in (a, b):
        cls = word.capitalize()
        could = p_of(f"The opacity could be {word}.", cls, vocab)
        may = p_of(f"The opacity may be {word}.", cls, vocab)
        assert f[cls]["status"] == "uncertain", (cls, f[cls])
        assert f[cls]["certainty"] < min(could, may), (cls, f[cls], could, may)


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text", [
    "It is difficult to distinguish between atelectasis and pneumonia.",
    "Atelectasis cannot be differentiated from pneumonia.",
    "Difficult to distinguish atelectasis from pneumonia at the left base.",
    "Atelectasis is indistinguishable from pneumonia on this radiograph.",
])
def test_distinguish_frames_are_differentials(vocab: str, text: str) -> None:
    f = by_finding(text, vocab)
    for cls in ("Atelectasis", "Pneumonia"):
        assert f[cls]["status"] == "uncertain"
        assert f[cls]["certainty"] < p_of(f"This could be {cls.lower()}.", cls, vocab), f[cls]


@pytest.mark.parametrize("vocab", VOCABS)
def test_n_way_differential_spreads_further(vocab: str) -> None:
    two = p_of("Atelectasis or pneumonia.", "Pneumonia", vocab)
    three = p_of("Atelectasis, aspiration, or pneumonia.", "Pneumonia", vocab)
    four = p_of("Atelectasis, edema, aspiration, or pneumonia.", "Pneumonia", vocab)
    assert two > three > four
    assert three == pytest.approx(1 / 3, abs=1e-3) and four == pytest.approx(1 / 4, abs=1e-3)


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text", [
    "Atelectasis versus pneumonia, favor atelectasis.",
    "Atelectasis or pneumonia; atelectasis is favored.",
    "Favor atelectasis versus pneumonia.",
])
def test_a_favoured_alternative_is_exempt(vocab: str, text: str) -> None:
    f = by_finding(text, vocab)
    assert f["Atelectasis"]["certainty"] >= 0.7, f["Atelectasis"]
    assert f["Pneumonia"]["certainty"] < p_of("This could be pneumonia.", "Pneumonia", vocab)


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text,fav,other,fav_p", [
    ("Atelectasis versus pneumonia, the former favored.", "Atelectasis", "Pneumonia", 0.70),
    ("Atelectasis versus pneumonia, the latter favored.", "Pneumonia", "Atelectasis", 0.70),
    ("Atelectasis or pneumonia, favoring the former.", "Atelectasis", "Pneumonia", 0.70),
    ("Findings consistent with edema or pneumonia, the former more likely.", "Edema", "Pneumonia", 0.70),
    # the favoured member keeps its own hedge when that is weaker than the favour value
    ("The opacity may represent atelectasis or pneumonia, the former favored.", "Atelectasis", "Pneumonia", 0.48),
])
def test_former_latter_favoured(vocab: str, text: str, fav: str, other: str, fav_p: float) -> None:
    f = by_finding(text, vocab)
    assert f[fav]["certainty"] == fav_p, f[fav]
    assert f[other]["certainty"] < f[fav]["certainty"]
    assert f[other]["certainty"] < p_of(f"This could be {other.lower()}.", other, vocab)


@pytest.mark.parametrize("vocab", VOCABS)
def test_differential_cue_and_what_is_no_member(vocab: str) -> None:
    # a near-certain hedge over a differential leaves a plain differential; a hedge of its own stays the cue
    assert by_finding("Findings consistent with atelectasis or pneumonia.", vocab)["Atelectasis"]["cue"] == "or"
    assert by_finding("This may represent atelectasis or pneumonia.", vocab)["Atelectasis"]["cue"] == "may represent"
    # a negated list is no differential; coordination across "with" is none
    f = by_finding("No pneumothorax or effusion.", vocab)
    assert f["Pneumothorax"]["status"] == "negative" and f[name("Effusion", vocab)]["status"] == "negative"
    g = by_finding("Cardiomegaly with pulmonary edema or pneumonia.", vocab)
    assert g["Cardiomegaly"]["status"] == "positive"


def test_connector_values_come_from_the_lexicon() -> None:
    cues = load_cues()
    assert cues.alt_connectors["or"] == 0.39 and cues.alt_connectors["versus"] == 0.31
    could = cues.table.lookup("could be")[0][2]
    assert all(p < could for p in cues.alt_connectors.values()) and cues.slash_p < could


# ----------------------------------------------------------------------------- change that leaves something behind
@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text,cls", [
    ("Left lower lobe consolidation has partially cleared.", "Consolidation"),
    ("The right pleural effusion has largely resolved.", "Effusion"),
    ("The pneumothorax has nearly resolved.", "Pneumothorax"),
    ("The left basilar atelectasis is almost completely resolved.", "Atelectasis"),
    ("Near resolution of the left lower lobe pneumonia.", "Pneumonia"),
    ("Near-complete resolution of the pulmonary edema.", "Edema"),
    ("Pulmonary edema has mostly cleared.", "Edema"),
    ("The pneumonia has not completely resolved.", "Pneumonia"),
    ("Decreased left pleural effusion.", "Effusion"),
    ("Improving right lower lobe consolidation.", "Consolidation"),
])
def test_partial_resolution_keeps_the_finding(vocab: str, text: str, cls: str) -> None:
    f = by_finding(text, vocab)
    m = f[name(cls, vocab)]
    assert (m["status"], m["change"], m["typicality"]) == ("positive", "improved", "atypical"), m
    assert "No Finding" not in f


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text,cls", [
    ("The pneumothorax has resolved.", "Pneumothorax"),
    ("The left lower lobe consolidation has cleared.", "Consolidation"),
    ("The effusion is no longer seen.", "Effusion"),
    ("Interval resolution of the right pleural effusion.", "Effusion"),
    ("The pulmonary edema has completely resolved.", "Edema"),
    ("Complete clearing of the right lower lobe pneumonia.", "Pneumonia"),
])
def test_complete_resolution_makes_it_absent(vocab: str, text: str, cls: str) -> None:
    m = by_finding(text, vocab)[name(cls, vocab)]
    assert (m["status"], m["change"]) == ("negative", "resolved"), m


@pytest.mark.parametrize("text", [
    "Left lower lobe consolidation has partially cleared. No effusion.",
    "The effusion has largely resolved. The lungs are otherwise clear.",
    "Near resolution of the pneumothorax. Heart size normal.",
    "Pneumonia has not resolved. No pneumothorax.",
])
def test_no_finding_is_never_positive_while_a_finding_is_present(text: str) -> None:
    rows = mine_report(text)
    present = [r for r in rows if r["finding"] != "No Finding" and r["status"] != "negative"]
    assert present, rows
    assert not any(r["finding"] == "No Finding" for r in rows)


def test_unresolved_is_stable() -> None:
    f = by_finding("The right lower lobe pneumonia has not resolved.")["Pneumonia"]
    assert (f["status"], f["change"]) == ("positive", "stable")


# ----------------------------------------------------------------------------- modifier scope
@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text,members,field,value", [
    ("Moderate cardiomegaly and pulmonary edema.", ("Cardiomegaly", "Edema"), "severity", "moderate"),
    ("Small bilateral effusions and bibasilar atelectasis.", ("Effusion", "Atelectasis"), "severity", "mild"),
    ("Large right effusion and right lower lobe consolidation.", ("Effusion", "Consolidation"), "severity",
     "severe"),
    ("Increased bilateral effusions and bibasilar atelectasis.", ("Effusion", "Atelectasis"), "change",
     "worsened"),
    ("Stable cardiomegaly, pulmonary edema, and bilateral effusions.", ("Cardiomegaly", "Edema", "Effusion"),
     "change", "stable"),
    ("Cardiomegaly and pulmonary edema have worsened.", ("Cardiomegaly", "Edema"), "change", "worsened"),
    ("Cardiomegaly and bilateral effusions, unchanged.", ("Cardiomegaly", "Effusion"), "change", "stable"),
    ("Pneumothorax and effusion have resolved.", ("Pneumothorax", "Effusion"), "change", "resolved"),
])
def test_a_modifier_reaches_its_coordinated_noun_phrase(vocab: str, text: str, members: tuple, field: str,
                                                         value: str) -> None:
    f = by_finding(text, vocab)
    for cls in members:
        assert f[name(cls, vocab)][field] == value, (cls, f[name(cls, vocab)])


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text,owner,other,field", [
    ("The heart is enlarged, with worsening interstitial edema.", "Edema", "Cardiomegaly", "change"),
    ("Moderate cardiomegaly with pulmonary edema.", "Cardiomegaly", "Edema", "severity"),
    ("Pulmonary edema with moderate cardiomegaly.", "Cardiomegaly", "Edema", "severity"),
    ("Moderate cardiomegaly. Pulmonary edema.", "Cardiomegaly", "Edema", "severity"),
    ("Moderate cardiomegaly; pulmonary edema.", "Cardiomegaly", "Edema", "severity"),
    ("Cardiomegaly and the effusion has worsened.", "Effusion", "Cardiomegaly", "change"),
    ("The heart is enlarged and the effusion has increased.", "Effusion", "Cardiomegaly", "change"),
    ("Effusion has increased, pneumothorax is present.", "Effusion", "Pneumothorax", "change"),
    ("Cardiomegaly with central vascular congestion and increased interstitial opacities.", None,
     "Cardiomegaly", "change"),
])
def test_a_modifier_stays_in_its_clause(vocab: str, text: str, owner: str | None, other: str, field: str) -> None:
    f = by_finding(text, vocab)
    if owner:
        assert f[name(owner, vocab)][field] != "none", f[name(owner, vocab)]
    assert f[name(other, vocab)][field] == "none", f[name(other, vocab)]


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text,cls,field,value", [
    ("Small bilateral effusions and moderate atelectasis.", "Atelectasis", "severity", "moderate"),
    ("Worsening edema and new right effusion.", "Effusion", "change", "new"),
    ("Mild cardiomegaly and large bilateral effusions.", "Effusion", "severity", "severe"),
    ("Stable cardiomegaly and increasing right effusion.", "Effusion", "change", "worsened"),
    ("Large right pleural effusion and adjacent atelectasis.", "Atelectasis", "severity", "none"),
    ("Small left effusion and associated atelectasis.", "Atelectasis", "severity", "none"),
])
def test_own_modifier_wins_over_a_shared_one(vocab: str, text: str, cls: str, field: str, value: str) -> None:
    assert by_finding(text, vocab)[name(cls, vocab)][field] == value


@pytest.mark.parametrize("vocab", VOCABS)
def test_adverbs_of_an_adjective_are_not_shared(vocab: str) -> None:
    f = by_finding("Mildly enlarged heart and pulmonary edema.", vocab)
    assert f["Cardiomegaly"]["severity"] == "mild" and f["Edema"]["severity"] == "none"


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text,cls,field,value", [
    ("Small 3.3 mm right-sided pneumothorax.", "Pneumothorax", "severity", "mild"),
    ("There are small right and left pleural effusions.", "Effusion", "severity", "mild"),
    ("Stable, mild cardiomegaly.", "Cardiomegaly", "severity", "mild"),
    ("No change in the size of the left pleural effusion.", "Effusion", "change", "stable"),
    ("Bilateral effusions have increased in size.", "Effusion", "change", "worsened"),
    ("The effusion is small and stable.", "Effusion", "change", "stable"),
    ("Moderate right and small left pleural effusions.", "Effusion", "severity", "moderate"),
    ("Interval resolution of previously demonstrated bibasilar consolidation.", "Consolidation", "change",
     "resolved"),
    ("Consolidation and pulmonary venous engorgement have resolved.", "Consolidation", "change", "resolved"),
    ("Small right and large left pleural effusions.", "Effusion", "severity", "severe"),
    ("Interval decrease in size of small left apical pneumothorax.", "Pneumothorax", "change", "improved"),
    ("Interval increase in the size of the right pleural effusion.", "Effusion", "change", "worsened"),
])

def test_modifiers_inside_one_noun_phrase(vocab: str, text: str, cls: str, field: str, value: str) -> None:
    assert by_finding(text, vocab)[name(cls, vocab)][field] == value


@pytest.mark.parametrize("vocab", VOCABS)
@pytest.mark.parametrize("text", [
    "Interval increase in heart size.",
    "Interval increase in the size of the cardiac silhouette.",
    "There has been interval increase in size of the cardiac silhouette.",
])
def test_change_phrases_that_qualify_an_attribute(vocab: str, text: str) -> None:
    f = by_finding(text, vocab)["Cardiomegaly"]
    assert (f["status"], f["change"]) == ("positive", "worsened"), f


# ----------------------------------------------------------------------------- docs/cues.md
def test_committed_cues_doc_is_the_generators_output() -> None:
    from pathlib import Path

    from repgls.vocab.cues_doc import main, render

    doc = Path(__file__).resolve().parents[1] / "docs" / "cues.md"
    assert doc.read_text(encoding="utf-8") == render(), "docs/cues.md is stale: python -m repgls.vocab.cues_doc"
    assert main(["--check", "--out", str(doc)]) == 0


def test_cues_doc_gives_every_construction_a_value_and_a_source() -> None:
    from repgls.vocab.cues_doc import _load, _rows, render

    rows = _rows(_load(None))
    assert all(all(cell.strip() for cell in row) for row in rows), [r for r in rows if not all(c.strip() for c in r)]
    text = render()
    for construction in ("raise the possibility of", "the differential includes", "X favored over Y",
                         "X ... less likely", "if any", "the former favored", "X or Y", "X versus Y",
                         "partial change", "interval resolution of", "modifier scope: shared (head)",
                         "modifier scope: barrier"):
        assert construction in text, construction
    kinds = {r[1] for r in rows}
    assert {"hedge", "predicative hedge", "comparative", "differential connector", "change", "partial change",
            "severity", "negation", "doubt (negation-looking)", "hypothetical / request frame"} <= kinds
