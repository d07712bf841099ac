"""What does FP16 cost the network when TensorRT's DeformConv runs its PDF layers?

TensorRT's built-in ModulatedDeformConv2d plugin (the ``deformconv`` export form and
the PDFConv function body) keeps sample coordinates, bilinear weights, im2col values
and GEMM accumulation in half precision; our plugin keeps coordinates and accumulation
in FP32. Both are emulated on the CPU as their code states
(:mod:`saphnet.ops.fp16_emulation`, with the TensorRT source lines cited there).

Two networks: the shipped weights, and the paper's config with random weights (its
larger PDF share: 128 channels, K = 5), from ``saphnet selftest``'s
:func:`~saphnet.selftest.network_speed.paper_network`. Each runs in FP16 (PyTorch,
the float32 islands of the FP16 export kept) with every PDF op replaced by one
emulation, against the FP32 network with the reference op. The input is a real photo:
scikit-image's ``coffee`` (held out from the shipped weights' training), resized
(bicubic) to cover each size, centre-cropped and motion-blurred as the demo sample
(:func:`saphnet.data.sample.make_sample`'s PSF). Per layer, each op's own error
against the FP32 op on the same inputs. Writes ``fp16_fidelity.{json,md,png}``;
``--table`` also rewrites the package table that ``saphnet build`` warns from.

    python benchmarks/fp16_fidelity.py --sizes 720x1280 -o benchmarks/results [--merge]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from saphnet.errors import SaphnetError
from saphnet.export.fp16 import Float16Network
from saphnet.files import atomic_output, check_writable, write_report_files
from saphnet.ops.dispatch import forced_backend, register_backend
from saphnet.ops.fp16_emulation import HGEMM_BLOCK, saphnet_fp16_pdf, tensorrt_fp16_pdf
from saphnet.ops.pdf_conv import pdf_conv_gridsample
from saphnet.runtime import fp16_cost
from saphnet.selftest.report import json_safe, table

log = logging.getLogger("benchmarks.fp16_fidelity")

IMPLEMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "saphnet-plugin": saphnet_fp16_pdf,
    "tensorrt-deformconv": tensorrt_fp16_pdf,
}
DEFAULT_SIZES = "720x1280,1080x1920,2160x3840"
CROP = 96
"""Side of the crop shown where TensorRT's DeformConv differs most (output pixels)."""


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"720x1280,1080x1920"`` -> [(720, 1280), (1080, 1920)]; one-line error otherwise."""
    sizes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) >= 64 for p in parts):
            raise SaphnetError(f"--sizes: {item!r} is not HxW with both sides >= 64, e.g. 720x1280")
        sizes.append((int(parts[0]), int(parts[1])))
    return sizes


def photo(height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: the blurred ``coffee`` photo at this size."""
    from PIL import Image
    from skimage import data

    from saphnet.data.blur import blur_with
    from saphnet.data.psf import shake_trajectory, trajectory_psf
    from saphnet.data.sample import SAMPLE_SEED

    source = Image.fromarray(data.coffee())
    scale = max(height / source.height, width / source.width)
    size = (math.ceil(source.width * scale), math.ceil(source.height * scale))
    big = np.asarray(source.resize(size, Image.Resampling.BICUBIC), np.float64) / 255.0
    top, left = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    sharp = big[top : top + height, left : left + width]
    rng = np.random.default_rng(SAMPLE_SEED)
    psf = trajectory_psf(shake_trajectory(rng), exposure=0.12, extent=15.0)
    return np.clip(blur_with(rng, sharp, psf, shot=5e-5, read=2e-3), 0, 1).astype(np.float32)


NETWORKS = ("shipped", "paper")


def network(name: str) -> torch.nn.Module:
    """The shipped weights, or the paper's config with random weights."""
    from saphnet.runtime.torch_backend import load_model
    from saphnet.selftest.network_speed import paper_network

    return load_model() if name == "shipped" else paper_network()


def _probed(fn: Callable[..., torch.Tensor], layers: list[dict]) -> Callable[..., torch.Tensor]:
    """``fn`` that also records its own error against the FP32 op on the same inputs."""

    def run(x, offset, mask, weight, bias, stride, padding, dilation):
        y = fn(x, offset, mask, weight, bias, stride, padding, dilation)
        as32 = [t.float() for t in (x, offset, mask, weight)]
        b32 = None if bias is None else bias.float()
        ref = pdf_conv_gridsample(*as32, b32, stride, padding, dilation)
        err = (y.float() - ref).abs()
        layers.append(
            {
                "layer": len(layers),
                "shape": "x".join(str(s) for s in x.shape),
                "max_abs": float(err.max()),
                "rel_rms": float(err.square().mean().sqrt() / ref.square().mean().sqrt()),
            }
        )
        return y

    return run


class Float32Convolutions(TorchFunctionMode):
    """Half-precision convolutions computed in FP32 and rounded to half once: FP16
    tensors with FP32 accumulation (what tensor-core convolutions do), and MKL-DNN's
    speed where PyTorch's CPU half convolution is a slow reference loop.
    Both implementations get the same convolutions, so only the PDF op differs."""

    NAMES = frozenset({"conv2d", "conv_transpose2d", "linear"})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in self.NAMES and args[0].dtype == torch.float16:
            up = [a.float() if isinstance(a, torch.Tensor) else a for a in args]
            return func(*up, **kwargs).half()
        return func(*args, **kwargs)


def run_fp16(
    model: torch.nn.Module, image: torch.Tensor, name: str
) -> tuple[np.ndarray, list[dict]]:
    """The FP16 network with every PDF op run by emulation ``name``: output, per-layer errors."""
    layers: list[dict] = []
    register_backend(name, _probed(IMPLEMENTATIONS[name], layers), lambda *_: False, priority=-1)
    with forced_backend(name), torch.no_grad(), Float32Convolutions():
        out = Float16Network(model)(image)
    return out[0].permute(1, 2, 0).numpy(), layers


def worst_crop(error: np.ndarray, side: int = CROP) -> tuple[int, int]:
    """(top, left) of the ``side`` x ``side`` window with the largest mean error."""
    h, w = error.shape[:2]
    side = min(side, h, w)
    per_pixel = torch.from_numpy(error.mean(axis=2, dtype=np.float64))[None, None]
    mean = torch.nn.functional.avg_pool2d(per_pixel, side, stride=max(1, side // 4))
    row, col = divmod(int(mean.argmax()), mean.shape[-1])
    return min(row * max(1, side // 4), h - side), min(col * max(1, side // 4), w - side)


def measure(nets: list[str], sizes: list[tuple[int, int]]) -> tuple[list[dict], list[dict], dict]:
    """Rows (network, size, implementation, PSNR, errors), per-layer errors and, per
    network, the crops of the largest size's window where TensorRT's output errs most."""
    from saphnet.train.metrics import psnr

    rows, layer_rows, crops = [], [], {}
    torch.manual_seed(0)
    for net_name in nets:
        model = network(net_name)
        for height, width in sizes:
            size = f"{height}x{width}"
            image = torch.from_numpy(photo(height, width)).permute(2, 0, 1)[None].contiguous()
            start = time.perf_counter()
            with torch.no_grad():
                reference = model(image)[0].permute(1, 2, 0).numpy().astype(np.float64)
            log.info("%s %s: FP32 reference in %.0f s", net_name, size, time.perf_counter() - start)
            outputs = {}
            for impl in IMPLEMENTATIONS:
                start = time.perf_counter()
                out, layers = run_fp16(model, image, impl)
                seconds = time.perf_counter() - start
                outputs[impl] = out
                err = np.abs(out.astype(np.float64) - reference)
                rows.append(
                    {
                        "network": net_name,
                        "size": size,
                        "implementation": impl,
                        "psnr_db": round(psnr(out, reference), 2),
                        "max_abs": float(f"{err.max():.3g}"),
                        "mean_abs": float(f"{err.mean():.3g}"),
                        "fp16_seconds": round(seconds, 1),
                    }
                )
                layer_rows += [
                    {"network": net_name, "size": size, "implementation": impl, **layer}
                    for layer in layers
                ]
                log.info("%s", rows[-1])
            if (height, width) == max(sizes, key=lambda s: s[0] * s[1]):
                error = np.abs(outputs["tensorrt-deformconv"] - reference)
                top, left = worst_crop(error)
                window = (slice(top, top + CROP), slice(left, left + CROP))
                crops[net_name] = {
                    "size": size,
                    "top": top,
                    "left": left,
                    "images": {
                        "FP32 reference": reference[window],
                        **{f"FP16 {k}": v[window] for k, v in outputs.items()},
                    },
                }
    return rows, layer_rows, crops


def merged_rows(old: dict, key: str, rows: list[dict]) -> list[dict]:
    """``old[key]`` rows of (network, size) pairs not measured now, then ``rows``."""
    measured = {(r["network"], r["size"]) for r in rows}
    return [r for r in old.get(key, []) if (r["network"], r["size"]) not in measured] + rows


def markdown(report: dict) -> str:
    summary = [
        {
            "network": r["network"],
            "size": r["size"],
            "implementation": r["implementation"],
            "PSNR dB": r["psnr_db"],
            "max abs": r["max_abs"],
            "mean abs": r["mean_abs"],
            "FP16 run s": r["fp16_seconds"],
        }
        for r in report["rows"]
    ]
    layers: dict[tuple, dict] = {}
    for r in report["layers"]:
        row = layers.setdefault(
            (r["network"], r["size"], r["layer"]),
            {
                "network": r["network"],
                "size": r["size"],
                "layer": r["layer"],
                "x (NxCxHxW)": r["shape"],
            },
        )
        tag = "ours" if r["implementation"] == "saphnet-plugin" else "TensorRT"
        row[f"{tag} max abs"] = f"{r['max_abs']:.3g}"
        row[f"{tag} rel. RMS"] = f"{r['rel_rms']:.2e}"
    return (
        "\n".join(
            [
                "# FP16 fidelity: our plugin vs TensorRT's DeformConv (CPU emulation)",
                "",
                report["method"],
                "",
                f"Machine: {report['machine']}. HGEMM accumulation block: {report['hgemm_block']}.",
                "",
                "## Network output against the FP32 network (reference PDF op)",
                "",
                *table(summary),
                "",
                "## Per PDF layer: each op's error against the FP32 op on the same inputs",
                "",
                *table(list(layers.values())),
            ]
        )
        + "\n"
    )


def plot(report: dict, crops: dict) -> Callable[[Path], None]:
    def draw(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from saphnet import plots
        from saphnet.runtime.compare import DEFAULT_THRESHOLDS

        nets = list(dict.fromkeys(r["network"] for r in report["rows"]))
        crop_nets = [n for n in nets if n in crops]
        cols = max(len(nets), 4)
        fig = plt.figure(figsize=(3.2 * cols, 3.8 + 3.2 * len(crop_nets)))
        grid = fig.add_gridspec(
            1 + len(crop_nets), cols, height_ratios=[1.3] + [1] * len(crop_nets)
        )
        per_plot = cols // max(1, len(nets))
        for i, net in enumerate(nets):
            ax = fig.add_subplot(grid[0, i * per_plot : (i + 1) * per_plot])
            rows = [r for r in report["rows"] if r["network"] == net]
            sizes = list(dict.fromkeys(r["size"] for r in rows))
            series = {
                impl: [
                    next(
                        r["psnr_db"] for r in rows if r["size"] == s and r["implementation"] == impl
                    )
                    for s in sizes
                ]
                for impl in IMPLEMENTATIONS
            }
            plots.grouped_bars(
                ax,
                sizes,
                series,
                "PSNR vs FP32 (dB)",
                DEFAULT_THRESHOLDS["fp16"].min_psnr,
                "compare's FP16 floor",
            )
            ax.set_title(f"{net}: FP16 output vs FP32", fontsize=9)
            ax.legend(fontsize=7, loc="lower left")
        for j, net in enumerate(crop_nets):
            info = crops[net]
            images = info["images"]
            ref = images["FP32 reference"]
            diff = np.abs(images["FP16 tensorrt-deformconv"] - ref)
            gain = 0.5 / max(float(diff.max()), 1e-6)
            panels = [
                ("FP32 reference", ref),
                ("FP16, our plugin", images["FP16 saphnet-plugin"]),
                ("FP16, TensorRT DeformConv", images["FP16 tensorrt-deformconv"]),
                (f"|TensorRT - FP32| x{gain:.0f}", diff * gain),
            ]
            for k, (title, img) in enumerate(panels[:cols]):
                ax = fig.add_subplot(grid[1 + j, k])
                ax.imshow(np.clip(img, 0, 1))
                ax.set_title(title, fontsize=8)
                ax.set_axis_off()
            fig.text(
                0.01,
                1 - (1.3 + j + 0.5) / (1.3 + len(crop_nets)),
                f"{net}\n{info['size']}\n@({info['top']},{info['left']})",
                fontsize=7,
            )
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=110)
        plt.close(fig)

    return draw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default=DEFAULT_SIZES, help="HxW[,HxW...] (default: %(default)s)"
    )
    parser.add_argument(
        "--networks", default=",".join(NETWORKS),
        help="shipped (the shipped weights), paper (the paper's config, random weights) (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "-o", "--output-dir", type=Path, default=Path("benchmarks/results"),
        help="folder for fp16_fidelity.{json,md,png} (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--merge", action="store_true",
        help="keep the rows of other sizes from the folder's fp16_fidelity.json (implies --force)",
    )  # fmt: skip
    parser.add_argument(
        "--table", action="store_true",
        help=f"also rewrite the package table saphnet build warns from ({fp16_cost.TABLE.name})",
    )  # fmt: skip
    parser.add_argument("--force", action="store_true", help="overwrite existing results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    force = args.force or args.merge
    try:
        sizes = parse_sizes(args.sizes)
        nets = [n.strip() for n in args.networks.split(",")]
        unknown = sorted(set(nets) - set(NETWORKS))
        if unknown:
            raise SaphnetError(
                f"--networks: unknown {', '.join(unknown)}; choose from {', '.join(NETWORKS)}"
            )
        for ext in ("json", "md", "png"):
            check_writable(args.output_dir / f"fp16_fidelity.{ext}", force)
    except SaphnetError as exc:
        parser.exit(2, f"fp16_fidelity.py: error: {exc}\n")
    rows, layers, crops = measure(nets, sizes)
    # Read at the end, so runs of other networks or sizes that finished meanwhile are kept.
    old_path = args.output_dir / "fp16_fidelity.json"
    old = json.loads(old_path.read_text()) if args.merge and old_path.is_file() else {}
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "method": __doc__.split("\n\n")[1].replace("\n", " ").strip(),
        "hgemm_block": HGEMM_BLOCK,
        "rows": merged_rows(old, "rows", rows),
        "layers": merged_rows(old, "layers", layers),
    }
    written = write_report_files(
        args.output_dir, "fp16_fidelity", json.dumps(json_safe(report), indent=2) + "\n",
        markdown(report), plot(report, crops), force=force,
    )  # fmt: skip
    if args.table:
        with atomic_output(fp16_cost.TABLE, force=True) as tmp:
            # The trained network only: random weights barely pass PDF errors to the output.
            trained = [r for r in report["rows"] if r["network"] == "shipped"]
            tmp.write_text(json.dumps(fp16_cost.table_from_rows(trained), indent=2) + "\n")
        written.append(fp16_cost.TABLE)
    print(markdown(report), end="")
    log.info("wrote %s", ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
