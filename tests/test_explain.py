"""repgls.explain: Grad-CAM shapes and range on tiny models, a map that points at the evidence, PNGs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from repgls import explain

torch.set_num_threads(1)


class _BlobNet(nn.Module):
    """Logit 0 = mean bright evidence, logit 1 = mean dark evidence (fixed weights, no training)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 1, 1] = 1.0  # channel 0: the pixel
            self.conv.weight[1, 0, 1, 1] = -1.0  # channel 1: its negative
        self.relu = nn.ReLU()
        self.head = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.conv(x)).mean(dim=(2, 3)))


def _blob_images() -> torch.Tensor:
    x = torch.zeros(2, 1, 32, 32)
    x[0, 0, 2:12, 2:12] = 1.0  # bright blob top-left
    x[1, 0, 20:30, 18:28] = 1.0  # bright blob bottom-right
    return x - 0.2  # background slightly dark


def test_cam_points_at_the_region_that_drives_the_logit():
    model = _BlobNet()
    x = _blob_images()
    cams = explain.gradcam(model, x, [0, 0])  # last Conv2d found automatically
    assert cams.shape == (2, 32, 32) and cams.dtype == np.float32
    assert cams.min() >= 0 and cams.max() <= 1
    blob0 = np.zeros((32, 32), bool)
    blob0[2:12, 2:12] = True
    blob1 = np.zeros((32, 32), bool)
    blob1[20:30, 18:28] = True
    assert cams[0][blob0].mean() > 0.9 and cams[0][~blob0].mean() < 0.1
    assert cams[1][blob1].mean() > 0.9 and cams[1][~blob1].mean() < 0.1
    # class 1 reads dark evidence: its map is high off the blob
    dark = explain.gradcam(model, x[:1], 1, target_layers=[model.conv])
    assert dark[0][~blob0].mean() > 0.9 and dark[0][blob0].mean() < 0.1


@pytest.mark.parametrize("name", ["lu_vit_tiny_test", "densenet_tiny_test", "resnet_tiny_test"])
def test_gradcam_on_repgls_tiny_models(name):
    from repgls.models import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=3, in_chans=1, img_size=64)
    model.train()
    x = torch.randn(3, 1, 64, 64)
    cams = explain.gradcam(model, x, [0, 1, 2], batch_size=2)
    assert cams.shape == (3, 64, 64)
    assert np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1
    assert model.training  # mode restored
    again = explain.gradcam(model, x, [0, 1, 2])
    np.testing.assert_allclose(cams, again, atol=1e-5)


def test_gradcam_on_plain_timm_vit_with_explicit_reshape():
    import timm

    from repgls.models import vit_reshape_transform

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=64, in_chans=1, num_classes=3, depth=2,
                            pretrained=False)
    x = torch.randn(2, 1, 64, 64)
    cams = explain.gradcam(vit, x, 1, target_layers=[vit.blocks[-1].norm1],
                           reshape_transform=vit_reshape_transform(vit))
    assert cams.shape == (2, 64, 64) and cams.max() <= 1 and cams.min() >= 0
    inferred = explain.gradcam(vit, x, 1)  # bare timm ViT: inferred the same way
    np.testing.assert_allclose(cams, inferred, atol=1e-5)


def test_overlay_and_pngs(tmp_path):
    img = (np.arange(32 * 32).reshape(32, 32) % 256).astype(np.uint8)
    cam = np.zeros((8, 8), np.float32)
    cam[:4, :4] = 1.0
    rgb = explain.overlay(img, cam)
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
    # jet: high CAM is red, low CAM is blue
    assert rgb[2, 2, 0] > rgb[2, 2, 2] and rgb[30, 30, 2] > rgb[30, 30, 0]
    model = _BlobNet()
    paths = explain.save_cam_pngs(model, _blob_images(), 0, tmp_path / "cams", names=["a/1", "b"],
                                  class_names=["Bright spot", "Dark"])
    assert [p.name for p in paths] == ["a_1__Bright_spot.png", "b__Bright_spot.png"]
    for p in paths:
        with Image.open(p) as im:
            assert im.mode == "RGB" and im.size == (32, 32)
    with pytest.raises(ValueError, match="class indices"):
        explain.gradcam(model, _blob_images(), [0, 1, 0])
