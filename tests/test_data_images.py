"""Image reading (PNG / JPEG / DICOM), resizing and the one normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fakes import fake_xray, save_jpeg, save_png, write_dicom
from repgls.data.images import (
    ImageReadError,
    load_for_model,
    load_resized,
    normalize,
    read_image,
    resize_square,
)


def test_png_8bit_kept_exactly(tmp_path):
    arr = fake_xray(3)
    assert np.array_equal(read_image(save_png(tmp_path / "a.png", arr)), arr)


def test_png_16bit_minmax_scaled(tmp_path):
    raw = np.linspace(1000, 4000, 96 * 80).reshape(96, 80).astype(np.uint16)
    p = tmp_path / "a16.png"
    Image.fromarray(raw).save(p)
    out = read_image(p)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    expected = np.rint((raw.astype(float) - 1000) * 255 / 3000)
    assert np.abs(out.astype(float) - expected).max() <= 1


def test_rgb_jpeg_to_gray(tmp_path):
    arr = fake_xray(5)
    p = tmp_path / "c.jpg"
    Image.fromarray(np.stack([arr] * 3, -1)).save(p, quality=98)
    out = read_image(p)
    assert out.shape == arr.shape and np.abs(out.astype(int) - arr).mean() < 3


@pytest.mark.parametrize("bits", [12, 16])
def test_dicom_monochrome1_is_inverted_monochrome2(tmp_path, bits):
    base = fake_xray(7).astype(np.uint16) * ((2**bits - 1) // 255)
    m2 = read_image(write_dicom(tmp_path / "m2.dcm", base, bits=bits, photometric="MONOCHROME2"))
    # The same anatomy stored as MONOCHROME1 (high value = dark) must read back identically.
    m1 = read_image(write_dicom(tmp_path / "m1.dcm", (2**bits - 1) - base, bits=bits, photometric="MONOCHROME1"))
    assert m2.dtype == np.uint8 and m2.shape == base.shape
    assert m2.min() == 0 and m2.max() == 255
    assert np.abs(m1.astype(int) - m2.astype(int)).max() <= 1
    # monotone in the stored value: brighter stored pixel (MONOCHROME2) -> brighter output
    assert np.corrcoef(m2.ravel(), base.ravel())[0, 1] > 0.99


def test_dicom_window_applied(tmp_path):
    base = np.tile(np.arange(0, 4000, 40, dtype=np.uint16), (20, 1))  # 0..3960 ramp
    p = write_dicom(tmp_path / "w.dcm", base, bits=12, window=(1000.0, 400.0))
    out = read_image(p)
    # Window [800, 1200]: everything below is black, above is white, linear in between.
    assert (out[:, base[0] <= 780] == 0).all()
    assert (out[:, base[0] >= 1220] == 255).all()
    mid = out[0, (base[0] > 850) & (base[0] < 1150)]
    assert (np.diff(mid.astype(int)) >= 0).all() and 0 < mid.min() < mid.max() < 255


def test_dicom_modality_lut(tmp_path):
    base = fake_xray(2).astype(np.uint16) * 16
    a = read_image(write_dicom(tmp_path / "a.dcm", base, slope=1.0, intercept=0.0))
    b = read_image(write_dicom(tmp_path / "b.dcm", base, slope=2.0, intercept=-1024.0))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # linear LUT, min-max scaled: same picture


def test_dicom_detected_without_suffix(tmp_path):
    p = write_dicom(tmp_path / "noext", fake_xray(1).astype(np.uint16) * 16)
    assert read_image(p).shape == (96, 80)


def test_missing_and_corrupt_files_raise_clear_errors(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.png: file not found"):
        read_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    with pytest.raises(ImageReadError, match=r"bad\.jpg: cannot decode"):
        load_resized(bad, 32)
    bad_dcm = tmp_path / "bad.dcm"
    bad_dcm.write_bytes(b"\0" * 200)
    with pytest.raises(ImageReadError, match=r"bad\.dcm"):
        read_image(bad_dcm)


def test_resize_pad_keeps_aspect_and_centres():
    img = np.full((100, 50), 200, np.uint8)  # tall image
    out = resize_square(img, 64, "pad")
    assert out.shape == (64, 64)
    cols = np.flatnonzero(out.max(axis=0) > 0)
    assert cols.min() == 16 and cols.max() == 47  # 32 px wide, centred
    assert (out[:, :16] == 0).all() and (out[:, 48:] == 0).all()
    assert (out[:, 17:47] == 200).all()


def test_resize_crop_takes_centre():
    img = np.zeros((50, 100), np.uint8)
    img[:, 25:75] = 255  # the centre square is white
    out = resize_square(img, 32, "crop")
    assert out.shape == (32, 32)
    assert out[:, 1:-1].min() >= 250 and out.min() > 200  # only the edge columns blend with the black
    with pytest.raises(ValueError, match="'pad' or 'crop'"):
        resize_square(img, 32, "squash")


def test_jpeg_draft_resize_close_to_full_decode(tmp_path):
    big = np.array(Image.fromarray(fake_xray(9, 96, 96)).resize((1024, 1024), Image.Resampling.BILINEAR))
    p = save_jpeg(tmp_path / "big.jpg", big)
    fast = load_resized(p, 128)
    slow = resize_square(read_image(p), 128)
    assert fast.shape == (128, 128)
    assert np.abs(fast.astype(int) - slow.astype(int)).mean() < 2.0


def test_normalize_numpy_and_torch_agree():
    import torch

    x = np.array([0, 51, 128, 255], np.uint8)
    a = normalize(x)
    b = normalize(torch.from_numpy(x)).numpy()
    assert a.dtype == np.float32 and b.dtype == np.float32
    np.testing.assert_allclose(a, [-1.0, -0.6, 128 / 127.5 - 1, 1.0], atol=1e-6)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(normalize(x, scale=1024)[[0, 3]], [-1024, 1024])


def test_load_for_model_shape(tmp_path):
    p = save_png(tmp_path / "a.png", fake_xray(4))
    x = load_for_model(p, 64)
    assert x.shape == (1, 64, 64) and x.dtype == np.float32 and -1 <= x.min() < x.max() <= 1
