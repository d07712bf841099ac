"""The training blur of :mod:`saphnet.data.blur`, for a whole batch at once in torch.

A GPU trains faster than a CPU can blur crops one by one (a camera-shake PSF alone is
a 2,000-step random walk in Python), so for GPU training every stage is a batched
tensor op on the training device, with no per-crop CPU work:

* PSFs: camera-shake trajectories (Boracchi & Foi, the same dynamics as
  :func:`saphnet.data.psf.shake_trajectory`, run for a bank of trajectories at once
  and reused with random rotation, mirroring, exposure and extent), linear motion,
  and short PSFs down to a point, all rasterised by bilinear splatting into one
  fixed-size kernel per PSF;
* spatially varying blur: up to ``max_regions`` PSFs per image blended by smooth
  random masks (Gaussian-filtered noise in the Fourier domain, then a softmax);
* convolution by FFT in linear light, reflect-padded like :func:`convolve`;
* mild defocus (an anti-aliased disc, multiplied into the spectrum);
* shot and read noise;
* JPEG-like compression: 8-bit, YCbCr with 4:2:0 chroma, 8 x 8 DCT quantised with
  libjpeg's standard tables at a random quality (what Pillow's encoder does, here as
  tensor ops).

The ranges are those of a :class:`BlurSettings`, so the per-crop and the batched
synthesis draw from the same distribution (the tests compare their statistics).
Randomness comes from one ``torch.Generator`` per call, seeded by the caller.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .blur import BlurSettings

# libjpeg's standard luminance and chrominance quantisation tables (ITU T.81, annex K).
_JPEG_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_JPEG_CHROMA = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
)
_PATH_LENGTH = 60.0  # Boracchi & Foi's path length, as in saphnet.data.psf
_SPLAT_POINTS = 1024  # points per PSF path: under a pixel apart for paths up to 1000 px


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """The sRGB decoding curve, as :func:`saphnet.data.blur.srgb_to_linear`."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """The sRGB encoding curve, as :func:`saphnet.data.blur.linear_to_srgb`."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def _uniform(n: int, low: float, high: float, g: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=device)


def shake_trajectories(
    count: int, g: torch.Generator, samples: int = 2000, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``count`` camera-shake trajectories (count, samples), complex64 positions in
    pixels: :func:`saphnet.data.psf.shake_trajectory` run for all of them at once."""
    anxiety = 0.1 * torch.rand(count, generator=g, device=device)
    centripetal = 0.7 * torch.rand(count, generator=g, device=device)
    gaussian = 10.0 * torch.rand(count, generator=g, device=device)
    big_shakes = 0.2 * torch.rand(count, generator=g, device=device)
    step = _PATH_LENGTH / (samples - 1)
    angle = 2 * math.pi * torch.rand(count, generator=g, device=device)
    speed = torch.where(anxiety > 0, anxiety, torch.full_like(anxiety, step))
    v = torch.polar(speed, angle)
    jitter = torch.randn(samples, count, 2, generator=g, device=device)
    jitter = torch.complex(jitter[..., 0], jitter[..., 1])
    shake = torch.rand(samples, count, generator=g, device=device) < (big_shakes * anxiety)
    turn_angle = math.pi + torch.rand(samples, count, generator=g, device=device) - 0.5
    turns = torch.polar(torch.full_like(turn_angle, 2.0), turn_angle)
    x = torch.zeros(samples, count, dtype=torch.complex64, device=device)
    pos = x[0]
    for t in range(samples - 1):
        dv = (
            torch.where(shake[t], v * turns[t], 0)
            + anxiety * (gaussian * jitter[t] - centripetal * pos) * step
        )
        v = v + dv
        v = v / (v.abs() + 1e-12) * step
        pos = pos + v
        x[t + 1] = pos
    return x.T.contiguous()


def _splat(points: torch.Tensor, radius: int) -> torch.Tensor:
    """Complex points (B, M), already centred, -> (B, K, K) kernels, K = 2 * radius + 1,
    by bilinear splatting; each kernel sums to 1."""
    b = points.shape[0]
    size = 2 * radius + 1
    px = points.real.clamp(-radius, radius - 1e-4) + radius
    py = points.imag.clamp(-radius, radius - 1e-4) + radius
    x0, y0 = px.floor(), py.floor()
    fx, fy = px - x0, py - y0
    x0, y0 = x0.long(), y0.long()
    kernel = torch.zeros(b, size * size, device=points.device, dtype=px.dtype)
    for dy, dx, w in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        kernel.scatter_add_(1, (y0 + dy) * size + (x0 + dx), w)
    kernel = kernel.clamp_min(0)
    return (kernel / kernel.sum(dim=1, keepdim=True)).view(b, size, size)


def psf_radius(settings: BlurSettings) -> int:
    """Half side of the batched kernels: a path of extent L centred on its centroid
    reaches at most L from the centre, plus one pixel of bilinear splat."""
    return math.ceil(settings.max_length) + 1


def random_psfs(
    count: int,
    bank: torch.Tensor,
    settings: BlurSettings,
    g: torch.Generator,
) -> torch.Tensor:
    """``count`` random motion PSFs (count, K, K), K = 2 * psf_radius + 1, drawn like
    :func:`saphnet.data.blur.random_psf`: linear with ``linear_prob``, else a piece of a
    shake trajectory from ``bank`` (randomly rotated and mirrored); with
    ``short_prob`` a length/extent in [0, min_length] instead of
    [min_length, max_length]."""
    device = bank.device
    short = torch.rand(count, generator=g, device=device) < settings.short_prob
    lo = torch.where(short, 0.0, settings.min_length)
    hi = torch.where(short, settings.min_length, settings.max_length)
    length = lo + (hi - lo) * torch.rand(count, generator=g, device=device)
    linear = torch.rand(count, generator=g, device=device) < settings.linear_prob
    t = torch.linspace(0.0, 1.0, _SPLAT_POINTS, device=device)

    # Linear motion: a centred segment at a random angle (y up, as in linear_psf).
    theta = torch.deg2rad(_uniform(count, 0.0, 180.0, g, device))
    s = (t[None] - 0.5) * length[:, None]
    segment = torch.complex(s * torch.cos(theta)[:, None], -s * torch.sin(theta)[:, None])

    # Shake: the first `exposure` of a bank trajectory, log-uniform in [0.05, 1].
    pick = torch.randint(len(bank), (count,), generator=g, device=device)
    exposure = torch.exp(_uniform(count, math.log(0.05), 0.0, g, device))
    samples = bank.shape[1]
    end = (exposure * samples).round().clamp(min=2) - 1  # index of the last exposed sample
    pos = t[None] * end[:, None]
    i0 = pos.floor().long().clamp(max=samples - 2)
    frac = (pos - i0).to(torch.float32)
    rows = torch.view_as_real(bank[pick])  # count, samples, 2 (gather on real tensors)

    def at(index: torch.Tensor) -> torch.Tensor:
        return torch.view_as_complex(rows.gather(1, index[..., None].expand(-1, -1, 2)))

    path = at(i0) * (1 - frac) + at(i0 + 1) * frac
    spin = torch.polar(torch.ones(count, device=device), _uniform(count, 0, 2 * math.pi, g, device))
    path = path * spin[:, None]
    mirror = torch.rand(count, generator=g, device=device) < 0.5
    path = torch.where(mirror[:, None], path.conj(), path)
    span = torch.maximum(
        path.real.amax(1) - path.real.amin(1), path.imag.amax(1) - path.imag.amin(1)
    )
    path = path * (length / span.clamp_min(1e-12))[:, None]

    points = torch.where(linear[:, None], segment, path)
    points = points - points.mean(dim=1, keepdim=True)
    return _splat(points, psf_radius(settings))


def disc_psfs(radius: torch.Tensor, half: int) -> torch.Tensor:
    """Anti-aliased discs (B, K, K), K = 2 * half + 1, as :func:`saphnet.data.psf.disc_psf`."""
    r = torch.arange(-half, half + 1, device=radius.device, dtype=torch.float32)
    dist = torch.hypot(r[:, None], r[None, :])
    kernel = (radius[:, None, None] + 0.5 - dist).clamp(0.0, 1.0)
    return kernel / kernel.sum(dim=(1, 2), keepdim=True)


def smooth_masks(
    count: torch.Tensor, size: int, regions: int, g: torch.Generator, sharpness: float = 8.0
) -> torch.Tensor:
    """(B, regions, S, S) soft masks summing to 1 per pixel; image ``i`` uses its first
    ``count[i]`` masks (the rest are zero): :func:`saphnet.data.blur.smooth_masks`
    with the wrap-around Gaussian filter done in the Fourier domain."""
    b, device = len(count), count.device
    noise = torch.randn(b, regions, size, size, generator=g, device=device)
    sigma = 0.2 * size
    f = torch.fft.fftfreq(size, device=device)
    gauss = torch.exp(-2 * (math.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    fields = torch.fft.ifft2(torch.fft.fft2(noise) * gauss).real
    fields = fields / (fields.std(dim=(2, 3), keepdim=True) + 1e-12)
    logits = sharpness * fields / 2
    unused = torch.arange(regions, device=device)[None, :] >= count[:, None]
    logits = logits.masked_fill(unused[:, :, None, None], -math.inf)
    return torch.softmax(logits, dim=1)


def _otf(psf: torch.Tensor, size: int) -> torch.Tensor:
    """rfft2 of (..., K, K) kernels centred at pixel (0, 0) of a (size, size) grid."""
    half = psf.shape[-1] // 2
    padded = F.pad(psf, (0, size - psf.shape[-1], 0, size - psf.shape[-2]))
    return torch.fft.rfft2(torch.roll(padded, shifts=(-half, -half), dims=(-2, -1)))


def add_noise(
    linear: torch.Tensor, shot: torch.Tensor, read: torch.Tensor, g: torch.Generator
) -> torch.Tensor:
    """Shot noise (variance ``shot * signal``) plus Gaussian read noise, per image."""
    shot = shot.view(-1, 1, 1, 1)
    read = read.view(-1, 1, 1, 1)
    std = torch.sqrt(shot * linear.clamp_min(0) + read**2)
    return linear + std * torch.randn(linear.shape, generator=g, device=linear.device)


def _jpeg_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """libjpeg's quality scaling of the standard tables, per image: (B, 8, 8) each."""
    q = quality.to(torch.float32).clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q).view(-1, 1, 1)
    out = []
    for table in (_JPEG_LUMA, _JPEG_CHROMA):
        base = torch.tensor(table, dtype=torch.float32, device=quality.device)
        out.append(((base * scale + 50) / 100).floor().clamp(1, 255))
    return out[0], out[1]


def _dct_matrix(device: torch.device) -> torch.Tensor:
    k = torch.arange(8, dtype=torch.float32, device=device)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d


def _blockwise(plane: torch.Tensor, table: torch.Tensor, dct: torch.Tensor) -> torch.Tensor:
    """Quantise the 8 x 8 DCT of (B, H, W) planes (H, W multiples of 8) with per-image
    (B, 8, 8) tables, and transform back."""
    b, h, w = plane.shape
    blocks = plane.view(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
    coeff = dct @ blocks @ dct.T
    table = table[:, None, None]
    coeff = torch.round(coeff / table) * table
    return (dct.T @ coeff @ dct).permute(0, 1, 3, 2, 4).reshape(b, h, w)


def jpeg_like(srgb: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Baseline JPEG round trip of (B, 3, H, W) sRGB in [0, 1] at a per-image quality:
    8-bit, YCbCr (JFIF), 4:2:0 chroma by 2 x 2 means, 8 x 8 DCT with libjpeg's scaled
    standard tables, chroma upsampled bilinearly. Entropy coding is lossless, so this
    is the whole loss of a JPEG file."""
    b, _, h, w = srgb.shape
    ph, pw = (-h) % 16, (-w) % 16
    x = F.pad(torch.round(srgb.clamp(0, 1) * 255), (0, pw, 0, ph), mode="replicate")
    r, gr, bl = x.unbind(1)
    y = 0.299 * r + 0.587 * gr + 0.114 * bl - 128
    cb = -0.168736 * r - 0.331264 * gr + 0.5 * bl
    cr = 0.5 * r - 0.418688 * gr - 0.081312 * bl
    luma_q, chroma_q = _jpeg_tables(quality)
    dct = _dct_matrix(srgb.device)
    y = _blockwise(y, luma_q, dct)
    chroma = F.avg_pool2d(torch.stack([cb, cr], 1), 2)
    hc, wc = chroma.shape[-2:]
    chroma = torch.stack([_blockwise(chroma[:, i], chroma_q, dct) for i in range(2)], 1).view(
        b, 2, hc, wc
    )
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    cb, cr = chroma.unbind(1)
    y = y + 128
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    rgb = torch.round(rgb).clamp(0, 255) / 255
    return rgb[:, :, :h, :w]


def synthesize_batch(
    sharp: torch.Tensor,
    bank: torch.Tensor,
    settings: BlurSettings,
    g: torch.Generator,
) -> torch.Tensor:
    """Blur a batch of sRGB windows (B, 3, S, S) in [0, 1] like
    :func:`saphnet.data.blur.synthesize` does one image: 1 to ``max_regions`` PSFs
    blended by smooth masks in linear light, defocus, noise, sRGB, JPEG. Returns the
    blurred batch, same shape, float32 in [0, 1]."""
    b, _, size, _ = sharp.shape
    device = sharp.device
    regions = settings.max_regions
    radius = psf_radius(settings)
    linear = F.pad(srgb_to_linear(sharp.float()), (radius,) * 4, mode="reflect")
    padded = linear.shape[-1]
    spectrum = torch.fft.rfft2(linear)  # B, 3, P, P/2+1

    count = torch.randint(1, regions + 1, (b,), generator=g, device=device)
    psfs = random_psfs(b * regions, bank, settings, g).view(b, regions, *([2 * radius + 1] * 2))
    otf = _otf(psfs, padded)  # B, R, P, P/2+1
    if settings.defocus_prob > 0:
        blurry = torch.rand(b, generator=g, device=device) < settings.defocus_prob
        disc = disc_psfs(_uniform(b, 0.5, settings.max_defocus, g, device), radius)
        otf = torch.where(blurry[:, None, None, None], otf * _otf(disc, padded)[:, None], otf)
    blurred = torch.fft.irfft2(spectrum[:, None] * otf[:, :, None], s=(padded, padded))
    blurred = blurred[..., radius : radius + size, radius : radius + size].clamp_min(0)
    masks = smooth_masks(count, size, regions, g)
    blurred = (masks[:, :, None] * blurred).sum(dim=1)

    shot = _uniform(b, 0.0, settings.max_shot, g, device)
    read = _uniform(b, 0.0, settings.max_read, g, device)
    out = linear_to_srgb(add_noise(blurred, shot, read, g))
    if settings.jpeg_prob > 0:
        lo, hi = settings.jpeg_quality
        quality = torch.randint(lo, hi + 1, (b,), generator=g, device=device)
        compressed = torch.rand(b, generator=g, device=device) < settings.jpeg_prob
        out = torch.where(compressed[:, None, None, None], jpeg_like(out, quality), out)
    return out
