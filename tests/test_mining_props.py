"""Property tests of the rule miner: never crashes, spans index the original text, deterministic."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repgls.mining import mine_report
from repgls.mining.lexicon import compile_vocab, norm_phrase
from repgls.mining.schema import STATUSES

WORDS = ["no", "not", "without", "possible", "likely", "cannot", "be", "excluded", "mild", "small", "large",
         "stable", "new", "increased", "resolved", "effusion", "pneumothorax", "cardiomegaly", "heart", "size",
         "normal", "enlarged", "atelectasis", "or", "versus", "and/or", "but", ",", ".", ";", ":", "1.", "XXXX",
         "___", "approx.", "d/w", "İ", "ﬁ", "\n", "pleural", "consolidation", "opacity", "edema", "tube",
         # cues v4 constructions: frames, predicative hedges, comparatives, references, partial change, scope
         "raise the possibility of", "differential includes", "favored", "over", "rather than", "the former",
         "the latter favored", "less likely", "less likely than", "is thought", "if any", "partially", "cleared",
         "nearly", "with", "have", "moderate", "pneumonia", "/", "vs."]
radiology_text = st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join)
any_text = st.one_of(st.text(max_size=300), radiology_text)

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(any_text, st.sampled_from(["chexpert14", "nih14", "ltml39"]))
def test_never_crashes_and_rows_are_valid(text: str, vocab: str) -> None:
    rows = mine_report(text, vocab=vocab)
    classes = compile_vocab(vocab).classes
    for r in rows:
        assert r["finding"] in classes and r["status"] in STATUSES
        assert 0.0 <= r["certainty"] <= 1.0
        assert 0 <= r["start"] <= r["end"] <= len(text)


@SETTINGS
@given(radiology_text)
def test_spans_index_the_mention_in_the_original_text(text: str) -> None:
    lex = compile_vocab("chexpert14")
    for r in mine_report(text):
        if r["finding"] == "No Finding":
            continue
        frag = text[r["start"]:r["end"]]
        # the span is a phrase of this class in the vocabulary, and lies inside the kept sentence
        assert any(p[0] == lex.classes.index(r["finding"]) for p in lex.table.lookup(frag)), (frag, r)
        assert frag == frag.strip() and norm_phrase(frag)
        assert frag in r["sentence"] and r["sentence"] in text


@SETTINGS
@given(any_text)
def test_deterministic(text: str) -> None:
    assert mine_report(text) == mine_report(text)
