"""Image IO: bit depths, gray, alpha, EXIF orientation and every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saphnet.errors import SaphnetError
from saphnet.images import ImageError, read_image, write_image

RNG = np.random.default_rng(0)


def _rgb8(h: int = 24, w: int = 40) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb8_png_roundtrip(tmp_path: Path) -> None:
    pixels = _rgb8()
    Image.fromarray(pixels).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.rgb.dtype == np.uint8 and not img.gray and img.alpha is None
    np.testing.assert_array_equal(img.rgb, pixels)
    write_image(tmp_path / "b.png", img)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")), pixels)


def test_rgba_alpha_is_kept_untouched(tmp_path: Path) -> None:
    rgba = np.concatenate([_rgb8(), RNG.integers(0, 256, (24, 40, 1), dtype=np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.rgb.shape == (24, 40, 3)
    np.testing.assert_array_equal(img.alpha, rgba[..., 3])
    write_image(tmp_path / "b.png", img.with_rgb(255 - img.rgb))
    back = np.asarray(Image.open(tmp_path / "b.png"))
    assert back.shape == (24, 40, 4)
    np.testing.assert_array_equal(back[..., 3], rgba[..., 3])
    np.testing.assert_array_equal(back[..., :3], 255 - rgba[..., :3])


def test_gray_runs_as_rgb_and_comes_back_gray(tmp_path: Path) -> None:
    gray = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    img = read_image(tmp_path / "g.png")
    assert img.gray and img.rgb.shape == (20, 30, 3)
    np.testing.assert_array_equal(img.rgb[..., 1], gray)
    write_image(tmp_path / "o.png", img)
    out = Image.open(tmp_path / "o.png")
    assert out.mode == "L"
    np.testing.assert_array_equal(np.asarray(out), gray)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_png_roundtrip_keeps_16_bits(tmp_path: Path, channels: int) -> None:
    import png

    data = RNG.integers(0, 65536, (18, 22, channels)).astype(np.uint16)
    writer = png.Writer(22, 18, greyscale=channels == 1, alpha=channels == 4, bitdepth=16)
    with open(tmp_path / "a.png", "wb") as fh:
        writer.write(fh, data.reshape(18, -1))
    img = read_image(tmp_path / "a.png")
    assert img.rgb.dtype == np.uint16 and img.bit_depth == 16
    np.testing.assert_array_equal(img.rgb[..., 0], data[..., 0])
    write_image(tmp_path / "b.png", img)
    back = read_image(tmp_path / "b.png")
    np.testing.assert_array_equal(back.rgb, img.rgb)
    assert back.gray == (channels == 1)
    if channels == 4:
        np.testing.assert_array_equal(back.alpha, data[..., 3])


def test_16bit_tiff_roundtrip(tmp_path: Path) -> None:
    import tifffile

    data = RNG.integers(0, 65536, (17, 19, 3)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", data, photometric="rgb")
    img = read_image(tmp_path / "a.tif")
    np.testing.assert_array_equal(img.rgb, data)
    write_image(tmp_path / "b.tiff", img)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b.tiff"), data)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = _rgb8(20, 30)
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(tmp_path / "r.jpg", exif=exif, quality=100)
    img = read_image(tmp_path / "r.jpg")
    assert img.rgb.shape == (30, 20, 3)


def test_16bit_to_jpeg_drops_to_8bit(tmp_path: Path) -> None:
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", np.full((16, 16, 3), 0x8000, np.uint16), photometric="rgb")
    write_image(tmp_path / "a.jpg", read_image(tmp_path / "a.tif"))
    assert abs(int(np.asarray(Image.open(tmp_path / "a.jpg")).mean()) - 128) <= 1


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_text("hello, not a picture")
    with pytest.raises(ImageError) as exc:
        read_image(tmp_path / "x.png")
    assert "not an image" in _one_line(exc)


def test_truncated_image(tmp_path: Path) -> None:
    Image.fromarray(_rgb8(64, 64)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as exc:
        read_image(tmp_path / "t.png")
    assert "truncated" in _one_line(exc)


def test_too_small(tmp_path: Path) -> None:
    Image.fromarray(_rgb8(8, 40)).save(tmp_path / "s.png")
    with pytest.raises(ImageError) as exc:
        read_image(tmp_path / "s.png")
    assert "too small" in _one_line(exc)


def test_unsupported_mode(tmp_path: Path) -> None:
    Image.fromarray(RNG.random((20, 20)).astype(np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(ImageError) as exc:
        read_image(tmp_path / "f.tif")
    assert "not supported" in _one_line(exc)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "nope.png")


def test_existing_output_needs_force(tmp_path: Path) -> None:
    Image.fromarray(_rgb8()).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    with pytest.raises(SaphnetError, match="--force"):
        write_image(tmp_path / "a.png", img.with_rgb(255 - img.rgb))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), img.rgb)
    write_image(tmp_path / "a.png", img.with_rgb(255 - img.rgb), force=True)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), 255 - img.rgb)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no temp files left
