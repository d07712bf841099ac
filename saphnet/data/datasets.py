"""Blurred/sharp training pairs: GoPro-layout folders, or sharp photos blurred on the fly.

Every dataset is indexable and deterministic: item ``i`` draws its crop, flips and
blur from ``numpy.random.default_rng([seed, i])``, so a run is reproducible under a
seed and a resumed run sees exactly the items an uninterrupted one would have seen,
without saving any data-loader state. Items are ``(blurred, sharp)`` float32 arrays
(H, W, 3) in [0, 1].
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SaphnetError
from .blur import BlurSettings, synthesize

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Photos shipped by installed packages (scikit-image, matplotlib): enough for
# ``saphnet train --synthetic`` on a fresh machine. "chelsea" and "coffee" are held
# out for validation; "chelsea" is also the bundled demo sample.
BUILTIN_TRAIN = (
    "astronaut",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "grace_hopper",
    "camera",
    "coins",
    "moon",
    "text",
    "page",
    "brick",
    "grass",
    "gravel",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
)
BUILTIN_HELDOUT = ("chelsea", "coffee")
# Augmentation of sharp photos blurred for training (see SyntheticBlurDataset).
TRAIN_AUGMENT = {"min_scale": 0.75, "shuffle_channels": True}
# Training blur: the held-out set's ranges, plus one PSF in five nearly a point, mild
# defocus in one image in four and JPEG in three in ten (real frames have both).
TRAIN_BLUR = BlurSettings(short_prob=0.2, defocus_prob=0.25, jpeg_prob=0.3)


def to_rgb_float(image: np.ndarray) -> np.ndarray:
    """uint8/float, gray/RGB/RGBA -> float32 (H, W, 3) in [0, 1]."""
    image = np.asarray(image)
    scale = 255.0 if image.dtype == np.uint8 else (65535.0 if image.dtype == np.uint16 else 1.0)
    out = image.astype(np.float32) / scale
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    elif out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    elif out.shape[2] == 4:
        out = out[:, :, :3]
    return np.clip(out, 0.0, 1.0)


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file as float32 RGB (H, W, 3) in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return to_rgb_float(np.asarray(im.convert("RGB")))
    except (OSError, UnidentifiedImageError) as exc:
        raise SaphnetError(f"cannot read image {path}: {exc}; give a PNG/JPEG/TIFF file") from None


def builtin_image(name: str) -> np.ndarray:
    """One of the photos shipped by scikit-image (or matplotlib's ``grace_hopper``)."""
    if name == "grace_hopper":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
            from PIL import Image

            return to_rgb_float(np.asarray(Image.open(fh).convert("RGB")))
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        return to_rgb_float(left if name.endswith("left") else right)
    loader = getattr(data, name, None)
    if loader is None:
        raise SaphnetError(f"scikit-image has no sample image {name!r}; pick one of skimage.data")
    return to_rgb_float(loader())


def builtin_images(names: Sequence[str]) -> list[np.ndarray]:
    return [builtin_image(n) for n in names]


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    root = Path(folder)
    return sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _crop_box(rng: np.random.Generator, h: int, w: int, size: int) -> tuple[int, int]:
    return int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))


def _flip(rng: np.random.Generator, *images: np.ndarray) -> tuple[np.ndarray, ...]:
    """The same random horizontal and vertical flips applied to every image."""
    flip_h, flip_v = rng.random(2) < 0.5
    out = []
    for im in images:
        if flip_h:
            im = im[:, ::-1]
        if flip_v:
            im = im[::-1]
        out.append(np.ascontiguousarray(im))
    return tuple(out)


def _pad_to(image: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad an image smaller than ``size`` on a side up to ``size``."""
    ph = max(0, size - image.shape[0])
    pw = max(0, size - image.shape[1])
    if ph == 0 and pw == 0:
        return image
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect")


def _shrink(image: np.ndarray, size: int) -> np.ndarray:
    """Resize a square (S, S, 3) image to (size, size, 3) with Pillow's antialiased
    bicubic filter (8-bit, as the photos are); as is if S == size."""
    if image.shape[0] == size:
        return image
    from PIL import Image

    pixels = Image.fromarray(np.round(image * 255.0).astype(np.uint8))
    return np.asarray(pixels.resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255.0


class SyntheticBlurDataset:
    """Sharp images blurred on the fly with random spatially varying motion blur.

    With ``crop`` set, item ``i`` is a random ``crop`` x ``crop`` window (blurred with
    ``settings.margin`` pixels of context so its borders blur like its inside) with
    random flips; with ``crop=None`` it is the whole image ``i % len(images)``.
    ``length`` is the number of items (the trainer indexes far beyond any epoch, so
    it only matters for validation sets and ``len``).

    ``min_scale`` < 1 and ``shuffle_channels`` stretch a small photo collection: each
    crop is cut from the photo shrunk by a random factor in [min_scale, 1] (new
    texture scales, and detail sharper than the photo's own softness) and has its
    colour channels in a random order (new colours; motion blur is the same in every
    channel).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray | Path],
        crop: int | None = 256,
        seed: int = 0,
        settings: BlurSettings | None = None,
        flips: bool = True,
        length: int | None = None,
        min_scale: float = 1.0,
        shuffle_channels: bool = False,
    ) -> None:
        if not 0 < min_scale <= 1:
            raise SaphnetError(f"min_scale must be in (0, 1], got {min_scale}")
        if len(images) == 0:
            raise SaphnetError("no sharp images to blur; give a folder holding image files")
        self.images = list(images)
        self.crop = crop
        self.seed = seed
        self.settings = settings or BlurSettings()
        self.flips = flips
        self.length = length if length is not None else len(self.images)
        self.min_scale = min_scale
        self.shuffle_channels = shuffle_channels

    def __len__(self) -> int:
        return self.length

    @functools.lru_cache(maxsize=32)  # noqa: B019 - a few decoded images per dataset
    def _image(self, k: int) -> np.ndarray:
        item = self.images[k]
        return item if isinstance(item, np.ndarray) else read_rgb(item)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        if self.crop is None:
            sharp = self._image(index % len(self.images))
            return synthesize(rng, sharp, self.settings).astype(np.float32), sharp
        sharp = self._image(int(rng.integers(len(self.images))))
        margin = self.settings.margin
        window = self.crop + 2 * margin
        scale = rng.uniform(self.min_scale, 1.0) if self.min_scale < 1 else 1.0
        source = int(np.ceil(window / scale))  # the photo's pixels that shrink to the window
        sharp = _pad_to(sharp, source)
        y, x = _crop_box(rng, sharp.shape[0], sharp.shape[1], source)
        region = _shrink(sharp[y : y + source, x : x + source], window)
        if self.shuffle_channels:
            region = region[:, :, rng.permutation(3)]
        blurred = synthesize(rng, region, self.settings)
        inner = (slice(margin, margin + self.crop), slice(margin, margin + self.crop))
        pair = (blurred[inner].astype(np.float32), region[inner].astype(np.float32))
        return _flip(rng, *pair) if self.flips else pair


@dataclass(frozen=True)
class PairFiles:
    """One blurred/sharp file pair of a paired folder."""

    name: str
    blur: Path
    sharp: Path


def find_pairs(root: str | os.PathLike[str]) -> list[PairFiles]:
    """Every ``<seq>/blur/<f>`` with a matching ``<seq>/sharp/<f>`` under ``root``
    (GoPro layout; ``root`` itself may be one sequence)."""
    base = Path(root)
    if not base.is_dir():
        raise SaphnetError(f"data folder {base} does not exist; give a GoPro-layout folder")
    pairs = []
    for blur_dir in sorted({base / "blur", *base.rglob("blur")}):
        sharp_dir = blur_dir.parent / "sharp"
        if not (blur_dir.is_dir() and sharp_dir.is_dir()):
            continue
        seq = blur_dir.parent.relative_to(base).as_posix()
        for f in image_files(blur_dir):
            twin = sharp_dir / f.name
            if twin.is_file():
                name = f.name if seq == "." else f"{seq}/{f.name}"
                pairs.append(PairFiles(name, f, twin))
    if not pairs:
        raise SaphnetError(
            f"no blurred/sharp pairs under {base}; expected <seq>/blur/<file> and "
            "<seq>/sharp/<file> with the same file names (GoPro layout)"
        )
    return pairs


class PairedFolderDataset:
    """Real blurred/sharp pairs in GoPro layout; random crops and flips when ``crop``
    is set (training), whole images otherwise (evaluation)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        crop: int | None = 256,
        seed: int = 0,
        flips: bool = True,
    ) -> None:
        self.pairs = find_pairs(root)
        self.crop = crop
        self.seed = seed
        self.flips = flips

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        pair = (
            self.pairs[index % len(self.pairs)]
            if self.crop is None
            else self.pairs[int(rng.integers(len(self.pairs)))]
        )
        blurred, sharp = read_rgb(pair.blur), read_rgb(pair.sharp)
        if blurred.shape != sharp.shape:
            raise SaphnetError(
                f"{pair.blur} is {blurred.shape[:2]} but {pair.sharp} is {sharp.shape[:2]}; "
                "pairs must have the same size"
            )
        if self.crop is None:
            return blurred, sharp
        blurred, sharp = _pad_to(blurred, self.crop), _pad_to(sharp, self.crop)
        y, x = _crop_box(rng, blurred.shape[0], blurred.shape[1], self.crop)
        box = (slice(y, y + self.crop), slice(x, x + self.crop))
        pair_arrays = (blurred[box], sharp[box])
        return _flip(rng, *pair_arrays) if self.flips else pair_arrays


def training_dataset(
    data: str | os.PathLike[str] | None,
    crop: int,
    seed: int,
    settings: BlurSettings | None = None,
    builtin: bool = False,
) -> PairedFolderDataset | SyntheticBlurDataset:
    """The training set a user names: a GoPro-layout folder, a folder of sharp images
    (blurred on the fly), the builtin photos (``data`` None), or with ``builtin`` the
    builtin photos plus a folder of sharp images."""
    settings = settings or TRAIN_BLUR
    if data is None:
        return SyntheticBlurDataset(
            builtin_images(BUILTIN_TRAIN), crop, seed, settings, length=10**9, **TRAIN_AUGMENT
        )
    root = Path(data)
    if not root.is_dir():
        raise SaphnetError(f"data folder {root} does not exist; give a folder or use --synthetic")
    try:
        pairs = PairedFolderDataset(root, crop, seed)
    except SaphnetError:
        pairs = None
    if pairs is not None and builtin:
        raise SaphnetError(
            f"{root} holds blurred/sharp pairs; the builtin photos (--synthetic) can only be "
            "added to a folder of sharp images: drop --synthetic or --data"
        )
    if pairs is not None:
        return pairs
    files = image_files(root)
    if not files:
        raise SaphnetError(
            f"{root} holds neither GoPro-layout pairs (<seq>/blur, <seq>/sharp) nor "
            "image files; give one of the two"
        )
    images: list[np.ndarray | Path] = (
        [*builtin_images(BUILTIN_TRAIN), *files] if builtin else [*files]
    )
    return SyntheticBlurDataset(images, crop, seed, settings, length=10**9, **TRAIN_AUGMENT)


def heldout_dataset(
    crop: int | None = None, count: int = 16, seed: int = 1234
) -> SyntheticBlurDataset:
    """The held-out synthetic set: the builtin photos never trained on, blurred with
    ``count`` fixed random blurs (whole images when ``crop`` is None)."""
    return SyntheticBlurDataset(
        builtin_images(BUILTIN_HELDOUT), crop, seed, flips=False, length=count
    )
