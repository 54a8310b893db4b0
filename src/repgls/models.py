"""Classifier models over timm: LU-ViT, plain ViTs, DenseNet-121, ResNet-50, and tiny test variants.

``create_model(name, num_classes, in_chans=1, pretrained=False, img_size=224, **kw)`` returns an
``nn.Module`` whose ``forward(x)`` maps images ``x`` [B, C, H, W] to logits [B, K] and whose
``forward_all(x)`` returns ``{"logits": [B, K]}`` plus, for LU-ViT, ``"rate": [B, K]``.

LU-ViT is *our reading* of the Rep-GLS abstract (arXiv 2508.02495; no public code or weights exist): a ViT
whose pooled feature feeds two linear heads, a label head (K logits) and an uncertainty head that predicts
each finding's report rate r in (-1, 1) through tanh. The two heads are trained jointly (``losses.luvit``).

Single-channel input: timm builds the stem with ``in_chans=1``; pretrained RGB stems are adapted by timm's
``adapt_input_conv`` (sums the RGB kernels), both for hub weights and local files.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

__all__ = [
    "FAMILIES",
    "MODELS",
    "LUViT",
    "ModelFamily",
    "ModelSpec",
    "Probe",
    "TimmClassifier",
    "create_model",
    "embed",
    "gradcam_target_layers",
    "list_models",
    "load_weights",
    "pretrained_tag",
    "register_family",
    "register_model",
    "vit_reshape_transform",
]

log = logging.getLogger(__name__)


class ConvStemPatchEmbed(timm.layers.PatchEmbed):
    """ViT patch embedding through a small convolutional stem instead of one strided convolution.

    "Early Convolutions Help Transformers See Better" (Xiao et al., NeurIPS 2021, "ViT_C"): log2(patch_size)
    stride-2 3x3 convolutions (BatchNorm + ReLU, channels doubling up to ``embed_dim``; ``stem_depth`` 3x3
    convolutions per stage) and a final 1x1 projection. Same token grid and output as timm's ``PatchEmbed`` (it only replaces ``proj``), so position
    embeddings, Grad-CAM and checkpoints work unchanged. It trains faster and more stably from random
    initialisation, which is what small CPU runs and small data need. ``patch_size`` must be a power of two.
    """

    def __init__(self, *args: Any, stem_width: int = 16, stem_depth: int = 1, **kw: Any) -> None:
        super().__init__(*args, **kw)
        ph, pw = self.patch_size
        if ph != pw or ph < 2 or ph & (ph - 1):
            raise ValueError(f"ConvStemPatchEmbed needs a square power-of-two patch size, got {self.patch_size}")
        in_chans = self.proj.in_channels
        embed_dim = self.proj.out_channels
        layers: list[nn.Module] = []
        c_in, c_out = in_chans, stem_width
        for _ in range(ph.bit_length() - 1):
            for k in range(stem_depth):  # stem_depth > 1 adds stride-1 3x3 convolutions per stage
                layers += [
                    nn.Conv2d(c_in if k == 0 else c_out, c_out, 3, stride=2 if k == 0 else 1, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                ]
            c_in, c_out = c_out, min(2 * c_out, embed_dim)
        layers.append(nn.Conv2d(c_in, embed_dim, 1))
        self.proj = nn.Sequential(*layers)


@dataclass(frozen=True)
class ModelSpec:
    """Registry entry: a timm architecture (name + overrides) or a ``builder``, and whether to add the LU rate head.

    ``builder(num_classes=K, in_chans=C, img_size=S, **kw) -> nn.Module`` builds a non-timm model; it must map
    [B, C, S, S] to logits [B, K] (and may define ``forward_all``).
    """

    timm_name: str | None = None
    lu: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    test_img_size: int | None = None  # tiny variants fix their own default input size
    doc: str = ""
    builder: Callable[..., nn.Module] | None = None


MODELS: dict[str, ModelSpec] = {
    "lu_vit_small": ModelSpec("vit_small_patch16_224", lu=True, doc="LU-ViT on ViT-S/16 (default)"),
    "lu_vit_base": ModelSpec("vit_base_patch16_224", lu=True, doc="LU-ViT on ViT-B/16"),
    "densenet121": ModelSpec("densenet121", doc="DenseNet-121 (CheXNet-style baseline)"),
    "resnet50": ModelSpec("resnet50", doc="ResNet-50 (LTML / DB baseline)"),
    "lu_vit_tiny": ModelSpec(
        "vit_small_patch16_224",
        lu=True,
        test_img_size=64,
        overrides={
            "patch_size": 8,
            "embed_dim": 128,
            "depth": 2,
            "num_heads": 4,
            "embed_layer": functools.partial(ConvStemPatchEmbed, stem_depth=2),
        },
        doc="small LU-ViT for CPU runs: conv stem (ViT_C, 2 convs per stage), patch 8, 2 blocks, dim 128",
    ),
    "lu_vit_tiny_test": ModelSpec(
        "vit_small_patch16_224",
        lu=True,
        test_img_size=64,
        overrides={"embed_dim": 64, "depth": 2, "num_heads": 2},
        doc="tiny LU-ViT for tests (64 px)",
    ),
    "vit_tiny_test": ModelSpec(
        "vit_small_patch16_224",
        test_img_size=64,
        overrides={"embed_dim": 64, "depth": 2, "num_heads": 2},
        doc="tiny plain ViT for tests (64 px)",
    ),
    "densenet_tiny_test": ModelSpec(
        "densenet121",
        test_img_size=64,
        overrides={"growth_rate": 8, "block_config": (1, 1, 1, 1)},
        doc="tiny DenseNet for tests",
    ),
    "resnet_tiny_test": ModelSpec(
        "resnet18",
        test_img_size=64,
        overrides={"layers": (1, 1, 1, 1), "channels": (8, 16, 32, 64), "stem_width": 8},
        doc="tiny ResNet for tests",
    ),
}


def register_model(name: str, timm_name: str | None = None, *, builder: Callable[..., nn.Module] | None = None,
                   lu: bool = False, overrides: dict[str, Any] | None = None, test_img_size: int | None = None,
                   doc: str = "") -> ModelSpec:
    """Register a model name for ``create_model`` and the ``model.name`` config key: a timm architecture with
    ``overrides`` (``lu=True`` adds LU-ViT's rate head to a ViT), or a ``builder`` for any other module. Its
    Grad-CAM layer comes from its family (:func:`register_family`)."""
    if (timm_name is None) == (builder is None):
        raise ValueError(f"model {name!r}: give a timm_name or a builder (one of them)")
    spec = ModelSpec(timm_name, lu, dict(overrides or {}), test_img_size, doc, builder)
    MODELS[name] = spec
    return spec


class Probe(nn.Module):
    """A head over cached backbone features [B, D] (:mod:`repgls.data.features`): linear (``hidden=0``) or one
    hidden layer; with ``rate=True`` also LU-ViT's rate head (``forward_all`` returns ``rate`` [B, K])."""

    def __init__(self, num_classes: int, in_features: int, rate: bool = False, hidden: int = 0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes, self.in_features = int(num_classes), int(in_features)
        self.body: nn.Module = nn.Identity() if hidden <= 0 else nn.Sequential(
            nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout))
        width = hidden if hidden > 0 else in_features
        self.norm = nn.LayerNorm(in_features)
        self.head = nn.Linear(width, num_classes)
        self.rate_head = nn.Linear(width, num_classes) if rate else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, D] -> logits [B, K]."""
        return self.head(self.body(self.norm(x)))

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.body(self.norm(x))
        out = {"logits": self.head(f)}
        if self.rate_head is not None:
            out["rate"] = torch.tanh(self.rate_head(f))
        return out


def _probe_builder(rate: bool) -> Callable[..., nn.Module]:
    def build(num_classes: int, in_chans: int = 1, img_size: int | None = None, in_features: int | None = None,
              **kw: Any) -> nn.Module:
        dim = in_features or img_size  # a features dataset's items are [D]: the trainer passes D as img_size
        if not dim:
            raise ValueError("a probe needs in_features (the feature dimension D)")
        return Probe(num_classes, int(dim), rate=rate, **kw)

    return build


def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The pooled backbone feature [B, D] of a classifier from :func:`create_model` (what its head sees)."""
    bb = getattr(model, "backbone", model)
    if isinstance(model, LUViT):
        return bb(x)  # built with num_classes=0: the pooled feature
    return bb.forward_head(bb.forward_features(x), pre_logits=True)


def list_models() -> list[str]:
    """Registered names. Any timm ``vit_*`` name (``timm.list_models("vit_*")``) is also accepted by
    ``create_model`` and gives a plain ViT classifier."""
    return sorted(MODELS)


def _is_vit(module: nn.Module) -> bool:
    return isinstance(module, timm.models.vision_transformer.VisionTransformer)


class TimmClassifier(nn.Module):
    """A timm classifier (its own head gives K logits). ``forward_all`` -> ``{"logits": [B, K]}``."""

    def __init__(self, backbone: nn.Module, arch: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.arch = arch
        self.num_classes = int(backbone.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] -> logits [B, K]."""
        return self.backbone(x)

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x [B, C, H, W] -> {"logits": [B, K]}."""
        return {"logits": self.backbone(x)}


class LUViT(nn.Module):
    """LU-ViT (our reading of Rep-GLS): ViT pooled feature [B, D] -> label logits [B, K] and rate [B, K].

    ``rate = tanh(W_r f + b_r)`` predicts the report rate r in (-1, 1) (how confidently a radiologist would
    report the finding); ``logits = W f + b``. The backbone is a timm ViT built with ``num_classes=0``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, arch: str) -> None:
        super().__init__()
        if not _is_vit(backbone):
            raise TypeError("LUViT needs a timm VisionTransformer backbone")
        self.backbone = backbone
        self.arch = arch
        self.num_classes = int(num_classes)
        dim = int(backbone.num_features)
        self.head = nn.Linear(dim, num_classes)
        self.rate_head = nn.Linear(dim, num_classes)
        for lin in (self.head, self.rate_head):  # timm ViT head init: small weights, zero bias
            nn.init.trunc_normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] -> logits [B, K] (the rate head is skipped)."""
        return self.head(self.backbone(x))

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x [B, C, H, W] -> {"logits": [B, K], "rate": [B, K] in (-1, 1)}, one backbone pass."""
        f = self.backbone(x)
        return {"logits": self.head(f), "rate": torch.tanh(self.rate_head(f))}


def create_model(
    name: str = "lu_vit_small",
    num_classes: int = 14,
    in_chans: int = 1,
    pretrained: bool | str | Path = False,
    img_size: int | None = 224,
    **kw: Any,
) -> nn.Module:
    """Build a classifier by registry name (``list_models()``) or any timm ``vit_*`` name.

    ``pretrained``: False (random init), True (timm's default weights from the hub; needs network), a timm
    weights tag (``"tv_in1k"``: torchvision's ImageNet weights, as PU-RM and LTML used), or a local file
    path (.safetensors / .pth / .pt state dict; see ``load_weights``). ``img_size`` is the ViT input size
    (fixed; None = the variant's native size, 64 for the tiny test ViTs); CNNs accept any size. Extra ``kw``
    go to ``timm.create_model`` (e.g. ``drop_path_rate``).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    spec = MODELS.get(name)
    if spec is None:
        if name.startswith("vit_") and name in timm.list_models():
            spec = ModelSpec(name)
        else:
            raise ValueError(
                f"unknown model {name!r}; known: {', '.join(list_models())}, or any timm vit_* name"
            )
    if spec.builder is not None:
        if pretrained is True:
            raise ValueError(f"{name} is not a timm model; give pretrained weights as a file path")
        model = spec.builder(num_classes=num_classes, in_chans=in_chans, img_size=img_size or spec.test_img_size,
                             **{**spec.overrides, **kw})
        if pretrained not in (False, None):
            load_weights(model, pretrained)
        return model
    args: dict[str, Any] = {**spec.overrides, **kw, "in_chans": in_chans}
    assert spec.timm_name is not None
    is_vit = spec.timm_name.startswith("vit_")
    if is_vit:
        args["img_size"] = img_size if img_size is not None else (spec.test_img_size or 224)
    tag = pretrained_tag(pretrained)
    use_hub = pretrained is True or tag is not None
    if spec.test_img_size is not None and use_hub:
        raise ValueError(f"{name} is a random-init test model; it has no pretrained weights")
    timm_name = f"{spec.timm_name}.{tag}" if tag else spec.timm_name
    backbone = timm.create_model(timm_name, pretrained=use_hub, num_classes=0 if spec.lu else num_classes, **args)
    model: nn.Module = (
        LUViT(backbone, num_classes, arch=name) if spec.lu else TimmClassifier(backbone, arch=name)
    )
    if pretrained not in (False, True, None) and tag is None:
        load_weights(model, pretrained)
    return model


def pretrained_tag(pretrained: bool | str | Path | None) -> str | None:
    """A timm pretrained-weights tag (``"tv_in1k"``: torchvision's ImageNet weights, ``"a1_in1k"``...) when
    ``pretrained`` names one rather than a local file; None otherwise."""
    if not isinstance(pretrained, str) or Path(pretrained).exists():
        return None
    return pretrained if re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", pretrained) else None


def _read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: Any = load_file(str(path), device="cpu")
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state", "module"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(sd).__name__}")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in sd.items()}


@dataclass
class LoadReport:
    """What ``load_weights`` did: loaded keys, and keys missing, unexpected or skipped for shape."""

    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    shape_mismatch: list[str]

    def __str__(self) -> str:
        def short(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... (+{len(keys) - 8})" if len(keys) > 8 else "")

        return (
            f"loaded {len(self.loaded)} tensors; missing {len(self.missing)} [{short(self.missing)}]; "
            f"unexpected {len(self.unexpected)} [{short(self.unexpected)}]; "
            f"shape mismatch (skipped) {len(self.shape_mismatch)} [{short(self.shape_mismatch)}]"
        )


def load_weights(model: nn.Module, path: str | Path, strict: bool = False) -> LoadReport:
    """Load a local state dict into ``model`` and report missing / unexpected / shape-mismatched keys.

    Accepts our own checkpoints (keys ``backbone.*``, ``head.*``, ``rate_head.*``) and bare timm backbone
    checkpoints (keys of the timm model). ViT checkpoints go through timm's ``checkpoint_filter_fn``
    (position-embedding resampling for another ``img_size``); 4-D stem kernels with another channel count
    are adapted by ``timm.models.adapt_input_conv`` (RGB -> 1 channel sums the kernels). Tensors whose shapes
    still differ (e.g. a 1000-class head) are skipped and listed. ``strict=True`` raises on any missing key.
    The report is also stored as ``model.load_report`` and logged.
    """
    sd = _read_state_dict(path)
    backbone = getattr(model, "backbone", model)
    own = any(k.startswith("backbone.") for k in sd)
    target: nn.Module = model if own else backbone
    if own:
        sd_bb = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
        rest = {k: v for k, v in sd.items() if not k.startswith("backbone.")}
    else:
        sd_bb, rest = sd, {}
    if _is_vit(backbone):
        sd_bb = timm.models.vision_transformer.checkpoint_filter_fn(sd_bb, backbone)
    bb_state = backbone.state_dict()
    for k, v in list(sd_bb.items()):
        ref = bb_state.get(k)
        if ref is not None and v.ndim == 4 and ref.ndim == 4 and v.shape[1] != ref.shape[1]:
            sd_bb[k] = timm.models.adapt_input_conv(ref.shape[1], v)
    sd = {**{("backbone." + k if own else k): v for k, v in sd_bb.items()}, **rest}
    target_state = target.state_dict()
    mismatch = [k for k, v in sd.items() if k in target_state and target_state[k].shape != v.shape]
    for k in mismatch:
        del sd[k]
    result = target.load_state_dict(sd, strict=False)
    missing = list(result.missing_keys) + mismatch
    report = LoadReport(
        loaded=[k for k in sd if k in target_state],
        missing=missing,
        unexpected=list(result.unexpected_keys),
        shape_mismatch=mismatch,
    )
    if not report.loaded:
        raise ValueError(f"{path}: no tensor matched the model ({report})")
    if strict and missing:
        raise ValueError(f"{path}: missing keys with strict=True ({report})")
    log.info("load_weights(%s): %s", path, report)
    model.load_report = report  # type: ignore[attr-defined]
    return report


def vit_reshape_transform(backbone: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Grad-CAM reshape for a timm ViT: tokens [B, P + h*w, D] -> feature map [B, D, h, w] (P prefix tokens)."""
    n_prefix = int(getattr(backbone, "num_prefix_tokens", 1))
    h, w = backbone.patch_embed.grid_size

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        t = tokens[:, n_prefix:, :]
        if t.shape[1] != h * w:
            raise ValueError(f"expected {h * w} patch tokens, got {t.shape[1]}")
        return t.reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)

    return reshape


@dataclass(frozen=True)
class ModelFamily:
    """Models whose backbone is a ``backbone_type``, and where Grad-CAM hooks them: ``gradcam(backbone) ->
    (target layers, reshape transform or None)``."""

    name: str
    backbone_type: type
    gradcam: Callable[[nn.Module], tuple[list[nn.Module], Callable[[torch.Tensor], torch.Tensor] | None]]


FAMILIES: dict[str, ModelFamily] = {}


def register_family(name: str, backbone_type: type,
                    gradcam: Callable[[nn.Module], tuple[list[nn.Module], Any]]) -> ModelFamily:
    """Register a model family: models whose backbone (``model.backbone``, else the model) is an instance of
    ``backbone_type`` get their Grad-CAM target from ``gradcam``. Later registrations are tried first."""
    fam = ModelFamily(name, backbone_type, gradcam)
    FAMILIES[name] = fam
    return fam


register_family("vit", timm.models.vision_transformer.VisionTransformer,
                lambda bb: ([bb.blocks[-1].norm1], vit_reshape_transform(bb)))
register_family("densenet", timm.models.densenet.DenseNet, lambda bb: ([bb.features[-1]], None))
register_family("resnet", timm.models.resnet.ResNet, lambda bb: ([bb.layer4[-1]], None))


def gradcam_target_layers(
    model: nn.Module,
) -> tuple[list[nn.Module], Callable[[torch.Tensor], torch.Tensor] | None]:
    """Layers Grad-CAM should hook for this model, and the reshape transform (ViT only, else None).

    From the model's family (:func:`register_family`): ViT ``blocks[-1].norm1`` (the last block's input norm,
    tokens [B, N, D]) with ``vit_reshape_transform``; DenseNet the last feature module (``features[-1]``,
    after norm5); ResNet the last block of ``layer4``.
    """
    bb = getattr(model, "backbone", model)
    for fam in reversed(FAMILIES.values()):
        if isinstance(bb, fam.backbone_type):
            return fam.gradcam(bb)
    raise TypeError(f"no Grad-CAM target known for {type(bb).__name__}; register its family with "
                    "repgls.models.register_family")


register_model("linear_probe", builder=_probe_builder(rate=False),
               doc="linear head over cached backbone features (a frozen-backbone probe)")
register_model("lu_probe", builder=_probe_builder(rate=True),
               doc="LU-ViT's two heads (label + rate) over cached backbone features")
