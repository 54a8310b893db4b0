"""Models: registry, shapes, LU-ViT heads, 1-channel input, local weight loading, Grad-CAM targets."""

from __future__ import annotations

import pytest
import torch

from repgls import create_loss, create_model
from repgls.models import LUViT, gradcam_target_layers, list_models, load_weights

TINY = ["lu_vit_tiny", "lu_vit_tiny_test", "vit_tiny_test", "densenet_tiny_test", "resnet_tiny_test"]


@pytest.mark.parametrize("name", TINY)
def test_tiny_models_shapes_and_forward_all(name):
    torch.manual_seed(0)
    m = create_model(name, num_classes=5, img_size=64).eval()
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        logits = m(x)
        out = m.forward_all(x)
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()
    torch.testing.assert_close(out["logits"], logits)
    if name.startswith("lu_"):
        assert out["rate"].shape == (3, 5) and (out["rate"].abs() < 1).all()
    else:
        assert set(out) == {"logits"}


def test_deterministic_by_seed_and_single_channel_stem():
    torch.manual_seed(1)
    a = create_model("lu_vit_tiny_test", 3, img_size=None)  # native 64 px
    torch.manual_seed(1)
    b = create_model("lu_vit_tiny_test", 3, img_size=None)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
    assert a.backbone.patch_embed.proj.weight.shape[1] == 1
    assert a.backbone.patch_embed.grid_size == (4, 4)  # native 64 px
    assert create_model("lu_vit_tiny_test", 3, img_size=128).backbone.patch_embed.grid_size == (8, 8)
    assert create_model("resnet_tiny_test", 2, in_chans=3).backbone.conv1.weight.shape[1] == 3


def test_registry_and_passthrough_and_errors():
    names = list_models()
    for n in ("lu_vit_small", "lu_vit_base", "densenet121", "resnet50", *TINY):
        assert n in names
    m = create_model("vit_tiny_patch16_224", 4, img_size=32)  # any timm vit_* name
    assert m(torch.randn(1, 1, 32, 32)).shape == (1, 4)
    with pytest.raises(ValueError, match="unknown model"):
        create_model("not_a_model", 3)
    with pytest.raises(ValueError, match="no pretrained"):
        create_model("lu_vit_tiny_test", 3, pretrained=True)
    with pytest.raises(FileNotFoundError):
        create_model("lu_vit_tiny_test", 3, pretrained="/nonexistent/w.safetensors")


def test_full_size_models_build_with_expected_heads():
    m = create_model("lu_vit_small", 14)
    assert isinstance(m, LUViT) and m.head.out_features == 14 and m.rate_head.out_features == 14
    assert 21e6 < sum(p.numel() for p in m.parameters()) < 23e6  # ViT-S/16 + two heads
    with torch.no_grad():
        out = m.eval().forward_all(torch.randn(1, 1, 224, 224))
    assert out["logits"].shape == out["rate"].shape == (1, 14)
    assert create_model("densenet121", 14).backbone.num_classes == 14
    assert create_model("resnet50", 14).backbone.get_classifier().out_features == 14


def test_load_own_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    a = create_model("lu_vit_tiny_test", 4, img_size=64).eval()
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": a.state_dict()}, path)
    torch.manual_seed(99)
    b = create_model("lu_vit_tiny_test", 4, pretrained=path, img_size=64).eval()
    rep = b.load_report
    assert not rep.missing and not rep.unexpected and len(rep.loaded) == len(a.state_dict())
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(b.forward_all(x)["rate"], a.forward_all(x)["rate"])


def test_load_rgb_timm_backbone_safetensors_into_one_channel(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    rgb = create_model(
        "vit_tiny_test", 10, in_chans=3, img_size=64
    ).backbone  # a bare timm ViT with a 10-class head
    sd = {k: v.contiguous() for k, v in rgb.state_dict().items()}
    sd["extra.bogus"] = torch.zeros(2)
    path = tmp_path / "rgb.safetensors"
    save_file(sd, str(path))
    m = create_model("lu_vit_tiny_test", 3, pretrained=path, img_size=96)  # other size: pos_embed resampled
    rep = m.load_report
    w_rgb = rgb.patch_embed.proj.weight
    torch.testing.assert_close(m.backbone.patch_embed.proj.weight, w_rgb.sum(dim=1, keepdim=True))
    assert m.backbone.pos_embed.shape[1] == 1 + 6 * 6
    assert "extra.bogus" in rep.unexpected and "head.weight" in rep.unexpected
    torch.testing.assert_close(m.backbone.blocks[0].attn.qkv.weight, rgb.blocks[0].attn.qkv.weight)
    # a plain classifier: the 10-class head does not fit 3 classes -> skipped and reported
    p = create_model("vit_tiny_test", 3, pretrained=path, img_size=64)
    assert "head.weight" in p.load_report.shape_mismatch and "head.weight" in p.load_report.missing
    torch.save({"unrelated": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="no tensor matched"):
        load_weights(p, tmp_path / "bad.pth")


@pytest.mark.parametrize("name", TINY)
def test_gradcam_target_layers_give_feature_maps(name):
    m = create_model(name, 3, img_size=64).eval()
    layers, reshape = gradcam_target_layers(m)
    got = {}
    h = layers[0].register_forward_hook(lambda mod, i, o: got.setdefault("a", o))
    m(torch.randn(2, 1, 64, 64))
    h.remove()
    act = got["a"] if reshape is None else reshape(got["a"])
    assert act.ndim == 4 and act.shape[0] == 2
    if "vit" in name:
        assert act.shape[2:] == ((8, 8) if name == "lu_vit_tiny" else (4, 4))  # 64 px / patch 8 or 16


def test_lu_vit_trains_both_heads_with_joint_loss():
    torch.manual_seed(0)
    m = create_model("lu_vit_tiny_test", 3, img_size=64)
    x = torch.randn(4, 1, 64, 64)
    batch = {"y": torch.tensor([[1.0, 0, 0]] * 4), "r": torch.full((4, 3), 0.3), "mask": torch.ones(4, 3)}
    create_loss("luvit")(m.forward_all(x), batch).backward()
    assert m.head.weight.grad.abs().sum() > 0 and m.rate_head.weight.grad.abs().sum() > 0
    assert m.backbone.patch_embed.proj.weight.grad.abs().sum() > 0


def test_conv_stem_patch_embed_keeps_the_token_grid():
    from timm.layers import PatchEmbed

    from repgls.models import ConvStemPatchEmbed

    ref = PatchEmbed(img_size=64, patch_size=8, in_chans=1, embed_dim=32)
    conv = ConvStemPatchEmbed(img_size=64, patch_size=8, in_chans=1, embed_dim=32, stem_width=8)
    x = torch.randn(2, 1, 64, 64)
    assert conv(x).shape == ref(x).shape == (2, 64, 32)
    assert conv.grid_size == ref.grid_size == (8, 8)
    strided = [m for m in conv.proj if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == 3  # log2(8) stride-2 3x3 convolutions, then a 1x1 projection
    with pytest.raises(ValueError, match="power-of-two"):
        ConvStemPatchEmbed(img_size=60, patch_size=6, in_chans=1, embed_dim=32)


def test_lu_vit_tiny_has_a_two_conv_per_stage_stem():
    m = create_model("lu_vit_tiny", 14, img_size=None)
    convs = [c for c in m.backbone.patch_embed.proj if isinstance(c, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2), (1, 1)] * 3 + [(1, 1)]  # 3 stages x 2 convs, then 1x1
    assert m.backbone.patch_embed.grid_size == (8, 8) and len(m.backbone.blocks) == 2
