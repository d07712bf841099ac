"""What the paper visualises, read out of a running network with forward hooks.

For every content-aware module (per level, encoder and decoder) a forward hook
recomputes, from the module's own inputs and weights, the maps its forward uses:

* ``m1``: the spatial attention mask M1 of the linear attention;
* ``q``: the first few spatial attention maps Q (softmax over H*W);
* ``offsets``: the PDF sampling pattern; per pixel the V-weighted covariance of the
  K*K sampling positions (regular grid plus learnt offsets) gives an orientation
  (where the filter reaches) and an anisotropy, drawn as hue and brightness;
* ``kernel_var``: the variance of the per-pixel kernel V over its taps;
* ``fusion``: the fusion mask Mf (1: attention branch, 0: PDF branch).

Levels 2 and 3 run on image patches as a batch; the maps are joined back into one
image the way the network joins its features. :func:`direction_check` is the
paper's test of the offsets: blur one photo linearly at 0, 45, 90 and 135 degrees
and read the dominant orientation of the sampling pattern per level.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..model import SAPHNet
from ..model.blocks import ContentAwareModule


@dataclass
class ModuleMaps:
    """Maps of one content-aware module, each (H, W) float32 at feature resolution."""

    name: str
    level: int
    m1: np.ndarray
    q: list[np.ndarray]
    orientation: np.ndarray  # degrees in [0, 180), counter-clockwise from +x, y up
    anisotropy: np.ndarray  # in [0, 1]
    kernel_var: np.ndarray
    fusion: np.ndarray
    tensor: np.ndarray = field(repr=False)  # (3,) mean [cxx, cyy, cxy] over pixels, y up


def _join_patches(t: torch.Tensor) -> torch.Tensor:
    """Patches of one image as the network batches them -> one map (1, C, H, W):
    2 patches are top/bottom, 4 are top-left, bottom-left, top-right, bottom-right."""
    if t.shape[0] == 1:
        return t
    if t.shape[0] == 2:
        return torch.cat([t[0:1], t[1:2]], dim=2)
    if t.shape[0] == 4:
        left = torch.cat([t[0:1], t[1:2]], dim=2)
        right = torch.cat([t[2:3], t[3:4]], dim=2)
        return torch.cat([left, right], dim=3)
    raise ValueError(f"inspect: expected 1, 2 or 4 patches of one image, got batch {t.shape[0]}")


def sampling_covariance(
    v: torch.Tensor, offset: torch.Tensor, kernel: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel V-weighted covariance (cxx, cyy, cxy) of the sampling positions, in
    image axes with y pointing up. ``v``: (N, K*K, H, W), ``offset``: (N, 2*K*K, H, W)
    with channel 2k = dy, 2k+1 = dx of tap k (row-major taps)."""
    r = kernel // 2
    grid_y, grid_x = torch.meshgrid(
        torch.arange(-r, r + 1, dtype=torch.float32),
        torch.arange(-r, r + 1, dtype=torch.float32),
        indexing="ij",
    )
    dy = offset[:, 0::2].float() + grid_y.reshape(1, -1, 1, 1)
    dx = offset[:, 1::2].float() + grid_x.reshape(1, -1, 1, 1)
    px, py = dx, -dy
    w = v.float() / v.float().sum(dim=1, keepdim=True).clamp_min(1e-8)
    mx = (w * px).sum(dim=1, keepdim=True)
    my = (w * py).sum(dim=1, keepdim=True)
    cxx = (w * (px - mx) ** 2).sum(dim=1)
    cyy = (w * (py - my) ** 2).sum(dim=1)
    cxy = (w * (px - mx) * (py - my)).sum(dim=1)
    return cxx, cyy, cxy


def orientation_of(
    cxx: np.ndarray, cyy: np.ndarray, cxy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Principal axis (degrees in [0, 180)) and anisotropy (0 round, 1 a line) of
    2 x 2 covariances."""
    angle = np.degrees(0.5 * np.arctan2(2 * cxy, cxx - cyy)) % 180.0
    spread = np.sqrt((cxx - cyy) ** 2 + 4 * cxy**2)
    return angle, spread / np.maximum(cxx + cyy, 1e-8)


def _module_maps(
    module: ContentAwareModule, x: torch.Tensor, context: torch.Tensor | None, q_maps: int
) -> dict:
    att = module.attention
    feat = x if context is None else context
    m1 = torch.sigmoid(att.mask(feat))
    xm = feat * m1
    q_src = xm if context is None else x
    q = torch.softmax(att.query(q_src).float().flatten(2), dim=2).view(x.shape[0], -1, *x.shape[2:])
    v, offset = module.pdf.maps(x)
    cxx, cyy, cxy = sampling_covariance(v, offset, module.pdf.filter.kernel)
    return {
        "m1": m1,
        "q": q[:, :q_maps],
        "cov": torch.stack([cxx, cyy, cxy], dim=1),
        "kernel_var": v.float().var(dim=1, keepdim=True, unbiased=False),
        "fusion": torch.sigmoid(module.fusion(x)),
    }


def content_aware_modules(model: SAPHNet) -> Iterator[tuple[str, int, ContentAwareModule]]:
    """(name, level, module) for every content-aware module, level 1 first."""
    for i, level in enumerate(model.levels, start=1):
        for part in ("encoder", "decoder"):
            for j, block in enumerate(getattr(level, part).blocks):
                yield f"level{i}_{part}{j}", i, block.cam


@contextmanager
def recording(model: SAPHNet, q_maps: int = 3) -> Iterator[list[ModuleMaps]]:
    """Within the block, every forward of ``model`` on one image appends the maps of
    each content-aware module to the yielded list."""
    records: list[ModuleMaps] = []
    handles = []

    def hook_for(name: str, level: int):
        def hook(module: ContentAwareModule, args: tuple, _output: torch.Tensor) -> None:
            x = args[0]
            context = args[1] if len(args) > 1 else None
            with torch.no_grad():
                maps = {
                    k: _join_patches(t)[0].cpu().numpy()
                    for k, t in _module_maps(module, x, context, q_maps).items()
                }
            cxx, cyy, cxy = maps["cov"]
            angle, aniso = orientation_of(cxx, cyy, cxy)
            records.append(
                ModuleMaps(
                    name=name,
                    level=level,
                    m1=maps["m1"][0],
                    q=list(maps["q"]),
                    orientation=angle,
                    anisotropy=aniso,
                    kernel_var=maps["kernel_var"][0],
                    fusion=maps["fusion"][0],
                    tensor=maps["cov"].reshape(3, -1).mean(axis=1),
                )
            )

        return hook

    for name, level, module in content_aware_modules(model):
        handles.append(module.register_forward_hook(hook_for(name, level)))
    try:
        yield records
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def run_and_record(
    model: SAPHNet, image: np.ndarray, q_maps: int = 3
) -> tuple[np.ndarray, list[ModuleMaps]]:
    """Deblur one (H, W, 3) float image and return (output, maps of every module).

    The image is padded to a multiple of 16 by the network; maps cover the padded
    image at 1/4 resolution.
    """
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float()
    with recording(model.eval(), q_maps) as records:
        y = model(x)[0].clamp(0, 1).numpy().transpose(1, 2, 0)
    return y, list(records)


# -- colouring ---------------------------------------------------------------------


def colormap(
    values: np.ndarray, name: str = "viridis", lo: float | None = None, hi: float | None = None
) -> np.ndarray:
    """A scalar map -> uint8 RGB with a matplotlib colormap (min-max unless given)."""
    from matplotlib import colormaps

    lo = float(np.min(values)) if lo is None else lo
    hi = float(np.max(values)) if hi is None else hi
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    rgba = colormaps[name](np.clip(scaled, 0, 1))
    return (rgba[..., :3] * 255 + 0.5).astype(np.uint8)


def orientation_image(angle: np.ndarray, anisotropy: np.ndarray) -> np.ndarray:
    """Orientation as hue (0 deg red, 60 green, 120 blue, wrapping at 180), anisotropy
    as brightness (scaled to the map's 99th percentile)."""
    from matplotlib.colors import hsv_to_rgb

    top = max(float(np.percentile(anisotropy, 99)), 1e-6)
    hsv = np.stack([angle / 180.0, np.ones_like(angle), np.clip(anisotropy / top, 0, 1)], axis=-1)
    return (hsv_to_rgb(hsv) * 255 + 0.5).astype(np.uint8)


def map_images(maps: ModuleMaps, size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Named uint8 RGB images of one module's maps, resized to ``size`` (H, W)."""
    images = {
        "m1": colormap(maps.m1, "viridis", 0.0, 1.0),
        "offsets": orientation_image(maps.orientation, maps.anisotropy),
        "kernel_var": colormap(maps.kernel_var, "magma"),
        "fusion": colormap(maps.fusion, "viridis", 0.0, 1.0),
    }
    for i, q in enumerate(maps.q):
        images[f"q{i}"] = colormap(q, "inferno")
    if size is None:
        return images
    return {k: _resize(v, size) for k, v in images.items()}


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=size, mode="nearest")
    return t[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


# -- the paper's offset-direction check -------------------------------------------------


@dataclass(frozen=True)
class DirectionRow:
    blur_angle: float
    level: int
    orientation: float
    anisotropy: float

    @property
    def error(self) -> float:
        """Axial difference in degrees, in [0, 90]."""
        d = abs(self.orientation - self.blur_angle) % 180.0
        return min(d, 180.0 - d)


def direction_check(
    model: SAPHNet,
    sharp: np.ndarray,
    angles: Sequence[float] = (0.0, 45.0, 90.0, 135.0),
    length: float = 15.0,
) -> list[DirectionRow]:
    """Blur ``sharp`` linearly at each angle and read, per level, the dominant
    orientation of the PDF sampling pattern (the covariance averaged over pixels
    and over the level's modules)."""
    from ..data.blur import blur_with
    from ..data.psf import linear_psf

    rows = []
    for angle in angles:
        blurred = blur_with(np.random.default_rng(0), sharp, linear_psf(length, angle), 0.0, 0.0)
        _, records = run_and_record(model, blurred.astype(np.float32))
        for level in sorted({r.level for r in records}):
            mean = np.mean([r.tensor for r in records if r.level == level], axis=0)
            orient, aniso = orientation_of(*mean)
            rows.append(DirectionRow(angle, level, float(orient), float(aniso)))
    return rows


def direction_table(rows: Sequence[DirectionRow]) -> str:
    head = f"{'blur angle':>10}  {'level':>5}  {'offset orientation':>18}  {'anisotropy':>10}  {'error':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.blur_angle:10.0f}  {r.level:5d}  {r.orientation:18.1f}  {r.anisotropy:10.3f}  {r.error:6.1f}"
        )
    for level in sorted({r.level for r in rows}):
        errors = [r.error for r in rows if r.level == level]
        lines.append(
            f"level {level}: mean orientation error {np.mean(errors):.1f} deg (chance: 45)"
        )
    return "\n".join(lines)
