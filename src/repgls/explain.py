"""Grad-CAM maps and overlays for the classifiers of ``repgls.models`` (and plain timm / torch models).

Built on the ``grad-cam`` package (``pytorch_grad_cam.GradCAM`` with ``ClassifierOutputTarget``). The layer
to hook and, for ViTs, the token -> feature-map reshape come from ``repgls.models.gradcam_target_layers``
(ViT: last block's ``norm1``; DenseNet: ``features[-1]``; ResNet: ``layer4[-1]``), or from the caller;
any other model falls back to its last ``nn.Conv2d``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["cam_to_uint8", "find_target_layers", "gradcam", "image_to_uint8", "overlay", "save_cam_pngs"]


def find_target_layers(model: nn.Module) -> tuple[list[nn.Module], Callable[[torch.Tensor], torch.Tensor] | None]:
    """Grad-CAM target layers and reshape transform for ``model``.

    Uses ``repgls.models.gradcam_target_layers`` for timm ViT / DenseNet / ResNet (bare or wrapped in a
    ``.backbone``); otherwise the last ``nn.Conv2d`` of the model (no reshape).

    Raises:
        TypeError: no known target and no convolution in the model.
    """
    from repgls.models import gradcam_target_layers

    try:
        return gradcam_target_layers(model)
    except TypeError:
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise TypeError(f"cannot choose a Grad-CAM layer for {type(model).__name__}: pass target_layers "
                            "(and reshape_transform for token models)") from None
        return [convs[-1]], None


def _as_class_list(class_indices: int | Sequence[int] | np.ndarray, batch: int) -> list[int]:
    if isinstance(class_indices, (int, np.integer)):
        return [int(class_indices)] * batch
    out = [int(c) for c in np.asarray(class_indices).ravel()]
    if len(out) != batch:
        raise ValueError(f"{len(out)} class indices for {batch} images")
    return out


def gradcam(model: nn.Module, images: torch.Tensor | np.ndarray, class_indices: int | Sequence[int],
            target_layers: Sequence[nn.Module] | None = None,
            reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
            batch_size: int = 16, device: str | torch.device | None = None) -> np.ndarray:
    """Grad-CAM of each image for one class each.

    Args:
        model: maps [B, C, H, W] to logits [B, K].
        images: float [B, C, H, W] (already normalised as for the model) or [B, H, W] (C = 1 added).
        class_indices: one class for all images, or one per image ([B]).
        target_layers / reshape_transform: override ``find_target_layers``.
        batch_size: images per Grad-CAM pass. device: where to run (default: the model's device).
    Returns:
        float32 [B, H, W] in [0, 1]; each map is min-max scaled by grad-cam (an all-zero map stays 0,
        e.g. when no location raises the logit).
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images,
                        dtype=torch.float32)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W] or [B, H, W]; got {tuple(x.shape)}")
    classes = _as_class_list(class_indices, x.shape[0])
    if target_layers is None:
        target_layers, inferred = find_target_layers(model)
        reshape_transform = reshape_transform or inferred
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.enable_grad(), GradCAM(model=model, target_layers=list(target_layers),
                                          reshape_transform=reshape_transform) as cam:
            for i in range(0, x.shape[0], batch_size):
                xb = x[i:i + batch_size].to(device)
                targets = [ClassifierOutputTarget(c) for c in classes[i:i + batch_size]]
                out.append(np.asarray(cam(input_tensor=xb, targets=targets), dtype=np.float32))
    finally:
        model.train(was_training)
    maps = np.concatenate(out, axis=0) if out else np.zeros((0, *x.shape[-2:]), np.float32)
    return np.clip(np.nan_to_num(maps, nan=0.0), 0.0, 1.0)


def image_to_uint8(image: Any) -> np.ndarray:
    """Grey image [H, W] (or [1, H, W]) of any range -> uint8 [H, W]; float images are min-max scaled."""
    a = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image)
    a = np.squeeze(a)
    if a.ndim != 2:
        raise ValueError(f"expected a grey image [H, W]; got shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    return np.zeros(a.shape, np.uint8) if hi <= lo else np.round((a - lo) / (hi - lo) * 255).astype(np.uint8)


def cam_to_uint8(cam: np.ndarray) -> np.ndarray:
    """CAM [H, W] in [0, 1] -> uint8 [H, W] (for storing raw maps as grey PNGs)."""
    return np.round(np.clip(cam, 0.0, 1.0) * 255).astype(np.uint8)


def overlay(image: Any, cam: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """Jet-coloured CAM over a grey image, via grad-cam's ``show_cam_on_image``.

    Args:
        image: grey [H, W] (uint8, or any float range: min-max scaled).
        cam: [h, w] in [0, 1]; resized (bilinear) to [H, W] when the sizes differ.
        image_weight: weight of the image in the blend (0..1).
    Returns:
        uint8 RGB [H, W, 3].
    """
    from PIL import Image
    from pytorch_grad_cam.utils.image import show_cam_on_image

    img = image_to_uint8(image)
    cam = np.clip(np.asarray(cam, dtype=np.float32), 0.0, 1.0)
    if cam.shape != img.shape:
        cam = np.asarray(Image.fromarray(cam, mode="F").resize(img.shape[::-1], Image.BILINEAR), np.float32)
        cam = np.clip(cam, 0.0, 1.0)
    rgb = np.repeat(img[:, :, None].astype(np.float32) / 255.0, 3, axis=2)
    return show_cam_on_image(rgb, cam, use_rgb=True, image_weight=image_weight)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "x"


def save_cam_pngs(model: nn.Module, images: torch.Tensor | np.ndarray, class_indices: int | Sequence[int],
                  out_dir: str | Path, names: Sequence[str] | None = None,
                  class_names: Sequence[str] | None = None, display: Any = None, **kw: Any) -> list[Path]:
    """Compute Grad-CAMs and write one overlay PNG per image: ``<out_dir>/<name>__<class>.png``.

    Args:
        images: model inputs [B, C, H, W] (the first channel is shown when ``display`` is None).
        class_indices: one class for all, or one per image. names: file stems (default ``img0000``...).
        class_names: names for the class indices (default the index). display: optional grey images
            [B, H, W] to draw under the maps (e.g. the original uint8 pixels).
        **kw: passed to ``gradcam`` (target_layers, reshape_transform, batch_size, device).
    Returns:
        The written paths, in image order.
    """
    from PIL import Image

    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if x.ndim == 3:
        x = x[:, None]
    cams = gradcam(model, x, class_indices, **kw)
    classes = _as_class_list(class_indices, len(cams))
    names = [f"img{i:04d}" for i in range(len(cams))] if names is None else list(names)
    if len(names) != len(cams):
        raise ValueError(f"{len(names)} names for {len(cams)} images")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, cam in enumerate(cams):
        base = display[i] if display is not None else x[i, 0]
        label = class_names[classes[i]] if class_names is not None else str(classes[i])
        path = out / f"{_safe(names[i])}__{_safe(label)}.png"
        Image.fromarray(overlay(base, cam)).save(path)
        paths.append(path)
    return paths
