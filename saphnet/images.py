"""Reading and writing the images users deblur, keeping what they expect kept.

The network sees RGB; files come as 8- or 16-bit, grayscale or colour, with or
without alpha, rotated by an EXIF tag. Reading turns any of those into an (H, W, 3)
uint8/uint16 RGB array plus what is needed to write the result back the same way:
grayscale comes back gray, alpha comes back untouched, the bit depth is kept.
Pillow reads and writes almost everything; it reduces 16-bit colour PNG to 8 bits, so
those go through pypng, and 16-bit TIFF through tifffile. Every failure is a
one-line SaphnetError naming the file, the problem and the fix.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import SaphnetError
from .files import atomic_output
from .sizes import too_small

log = logging.getLogger(__name__)

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
"""Files that ``saphnet deblur`` picks up from a folder."""

_PIL_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".webp": "WEBP",
}
_EIGHT_BIT_ONLY = {".jpg", ".jpeg", ".bmp", ".webp"}


class ImageError(SaphnetError):
    """An input image cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class LoadedImage:
    """An image as the network takes it, plus what writing it back needs."""

    rgb: np.ndarray
    """(H, W, 3) uint8 or uint16, EXIF orientation applied."""
    alpha: np.ndarray | None
    """(H, W) of the same dtype, passed through untouched; None without alpha."""
    gray: bool
    """The file was grayscale: the result is written gray (mean of the RGB output)."""
    icc_profile: bytes | None = None

    @property
    def bit_depth(self) -> int:
        return 16 if self.rgb.dtype == np.uint16 else 8

    def with_rgb(self, rgb: np.ndarray) -> LoadedImage:
        """The same image with new pixels (the deblurred result)."""
        return replace(self, rgb=rgb)


def _png_bit_depth(path: Path) -> int | None:
    """Bit depth from a PNG's IHDR, None for other files (Pillow does not report it)."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24]


def _check_size(path: Path, h: int, w: int) -> None:
    problem = too_small(h, w)
    if problem:
        raise ImageError(f"{path}: {problem}")


def _split(
    path: Path, array: np.ndarray, channels: int
) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """(H, W, C) with C in 1..4 -> rgb, alpha, gray."""
    if channels in (1, 2):
        gray = array[..., 0]
        return (
            np.repeat(gray[..., None], 3, axis=2),
            (array[..., 1] if channels == 2 else None),
            True,
        )
    if channels in (3, 4):
        return (
            np.ascontiguousarray(array[..., :3]),
            (array[..., 3].copy() if channels == 4 else None),
            False,
        )
    raise ImageError(f"{path}: {channels} channels are not supported; save it as gray, RGB or RGBA")


def _read_png16(path: Path) -> LoadedImage:
    import png

    try:
        w, h, rows, info = png.Reader(filename=str(path)).asDirect()
        data = np.vstack([np.asarray(r, np.uint16) for r in rows])
    except (png.Error, OSError, ValueError) as exc:
        raise ImageError(f"{path}: unreadable 16-bit PNG ({exc}); re-save it") from None
    planes = info["planes"]
    rgb, alpha, gray = _split(path, data.reshape(h, w, planes), planes)
    return LoadedImage(rgb, alpha, gray)


def _read_tiff16(path: Path) -> LoadedImage | None:
    """16-bit TIFFs through tifffile; None for other TIFFs (Pillow reads them)."""
    import tifffile

    try:
        data = tifffile.imread(str(path))
    except Exception as exc:  # tifffile raises many types for broken files
        raise ImageError(f"{path}: unreadable TIFF ({exc}); re-save it") from None
    if data.dtype != np.uint16:
        return None
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise ImageError(
            f"{path}: a TIFF with shape {data.shape} (several pages?) is not supported; save one image"
        )
    rgb, alpha, gray = _split(path, data, data.shape[2])
    return LoadedImage(rgb, alpha, gray)


def read_image(path: str | os.PathLike[str]) -> LoadedImage:
    """Read an image file as :class:`LoadedImage`, or raise a one-line ImageError."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p}: no such file")
    try:
        loaded = _read(p)
    except OSError as exc:  # Pillow's truncated-file and decoder errors
        raise ImageError(
            f"{p}: cannot decode it ({exc}); the file is truncated or damaged"
        ) from None
    _check_size(p, *loaded.rgb.shape[:2])
    return loaded


def _read(p: Path) -> LoadedImage:
    if _png_bit_depth(p) == 16:
        return _read_png16(p)
    if p.suffix.lower() in (".tif", ".tiff"):
        loaded = _read_tiff16(p)
        if loaded is not None:
            return loaded
    try:
        im = Image.open(p)
    except UnidentifiedImageError:
        raise ImageError(
            f"{p}: not an image Pillow can read; give a PNG, JPEG, TIFF, BMP or WebP file"
        ) from None
    with im:
        icc = im.info.get("icc_profile")
        im.load()
        im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
            rgb, alpha, gray = _split(p, np.asarray(im, np.uint16)[..., None], 1)
            return LoadedImage(rgb, alpha, gray, icc)
        if mode == "1":
            im, mode = im.convert("L"), "L"
        elif mode == "P":
            mode = "RGBA" if "transparency" in im.info else "RGB"
            im = im.convert(mode)
        elif mode in ("CMYK", "YCbCr"):
            im, mode = im.convert("RGB"), "RGB"
        if mode not in ("L", "LA", "RGB", "RGBA"):
            raise ImageError(
                f"{p}: pixel format {mode} is not supported; save it as 8- or 16-bit gray, RGB or RGBA"
            )
        data = np.asarray(im, np.uint8)
        if data.ndim == 2:
            data = data[..., None]
        rgb, alpha, gray = _split(p, data, data.shape[2])
        return LoadedImage(rgb, alpha, gray, icc)


def _assemble(image: LoadedImage) -> np.ndarray:
    """(H, W, C) array to write: gray as the mean of the RGB result, alpha appended."""
    rgb = image.rgb
    if image.gray:
        mean = rgb.astype(np.float32).mean(axis=2)
        pixels = np.rint(mean).astype(rgb.dtype)[..., None]
    else:
        pixels = rgb
    if image.alpha is not None:
        pixels = np.concatenate([pixels, image.alpha.astype(rgb.dtype)[..., None]], axis=2)
    return np.ascontiguousarray(pixels)


def write_image(path: str | os.PathLike[str], image: LoadedImage, force: bool = False) -> Path:
    """Write ``image`` atomically, format from the extension, bit depth kept (16-bit
    into an 8-bit-only format such as JPEG is reduced to 8 bits with a warning)."""
    target = Path(path)
    ext = target.suffix.lower()
    if ext not in _PIL_FORMATS:
        raise ImageError(
            f"{target}: unknown output format {ext!r}; use one of {', '.join(EXTENSIONS)}"
        )
    if image.bit_depth == 16 and ext in _EIGHT_BIT_ONLY:
        log.warning("%s: %s holds 8 bits; writing the 16-bit result as 8-bit", target, ext)
        image = LoadedImage(
            (image.rgb >> 8).astype(np.uint8),
            None if image.alpha is None else (image.alpha >> 8).astype(np.uint8),
            image.gray,
            image.icc_profile,
        )
    pixels = _assemble(image)
    with atomic_output(target, force=force) as tmp:
        if image.bit_depth == 16 and ext == ".png":
            _write_png16(tmp, pixels)
        elif image.bit_depth == 16:
            import tifffile

            tifffile.imwrite(
                str(tmp),
                pixels[..., 0] if pixels.shape[2] == 1 else pixels,
                photometric="minisblack" if pixels.shape[2] <= 2 else "rgb",
            )
        else:
            mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
            im = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels, mode=mode)
            if _PIL_FORMATS[ext] == "JPEG" and mode in ("LA", "RGBA"):
                log.warning("%s: JPEG has no alpha; dropping it", target)
                im = im.convert("L" if mode == "LA" else "RGB")
            options = {"quality": 95} if _PIL_FORMATS[ext] in ("JPEG", "WEBP") else {}
            if image.icc_profile:
                options["icc_profile"] = image.icc_profile
            im.save(tmp, format=_PIL_FORMATS[ext], **options)
    return target


def _write_png16(path: Path, pixels: np.ndarray) -> None:
    import png

    h, w, c = pixels.shape
    writer = png.Writer(w, h, greyscale=c <= 2, alpha=c in (2, 4), bitdepth=16)
    with open(path, "wb") as fh:
        writer.write(fh, pixels.reshape(h, w * c))


def to_float(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8/uint16 -> (1, 3, H, W) float32 in [0, 1] (small images only)."""
    scale = 65535.0 if rgb.dtype == np.uint16 else 255.0
    return (np.moveaxis(rgb, -1, 0)[None].astype(np.float32) / np.float32(scale)).copy()


def from_float(batch: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`to_float`: rounds and clips into ``dtype``."""
    scale = 65535.0 if np.dtype(dtype) == np.uint16 else 255.0
    return np.clip(np.rint(np.moveaxis(batch[0], 0, -1) * scale), 0, scale).astype(dtype)
