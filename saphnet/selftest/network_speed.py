"""The whole network at 720x1280 on the GPU: PyTorch eager in FP32 and FP16 with each
implementation of the PDF op, CUDA graphs, and ONNX Runtime's CUDA provider where it
exists; ms per image, images/s, and the parity of each output against eager FP32 with
the reference op, all from one run.

Two networks: the shipped weights (trained: their offsets and kernels are real, so
parity is judged with ``saphnet compare``'s PSNR thresholds) and the paper's full-size
config, whose untrained start is an identity (zeroed offset convs and decoder heads);
its zero tensors are filled with small random values so its PDF layers sample off the
grid and its output depends on them. Its parity is reported, not judged.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math

import numpy as np

from ..runtime.compare import DEFAULT_THRESHOLDS
from .op_speed import no_tf32, time_ms
from .report import FAILED, speedups
from .shapes import SPEED_SIZE

log = logging.getLogger(__name__)

BASELINE = "eager fp32 reference"


def paper_network(seed: int = 0):
    """The paper's config with every all-zero parameter filled with N(0, 0.02) values."""
    import torch

    from ..model import SAPHNet, SAPHNetConfig

    torch.manual_seed(seed)
    model = SAPHNet(SAPHNetConfig()).eval()
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    return model


def psnr(reference: np.ndarray, output: np.ndarray) -> float:
    """PSNR in dB for images in [0, 1] (inf when identical, NaN with NaN/Inf in output)."""
    if not np.isfinite(output).all():
        return math.nan
    mse = float(np.mean((output.astype(np.float64) - reference) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _variants(backends: list[str], quick: bool) -> list[tuple[str, str, str, bool]]:
    """(label, precision, PDF backend, CUDA graph) to time; the baseline first."""
    found = [(BASELINE, "fp32", "reference", False)]
    for precision in ("fp32", "fp16"):
        for backend in backends:
            if (precision, backend) != ("fp32", "reference"):
                found.append((f"eager {precision} {backend}", precision, backend, False))
        if "plugin" in backends:
            found.append((f"graph {precision} plugin", precision, "plugin", True))
    if quick:
        keep = {BASELINE, "eager fp16 plugin", "graph fp16 plugin", "eager fp16 torchvision"}
        found = [v for v in found if v[0] in keep]
    return found


def _graphed(model, image):
    """A CUDA graph of one forward of ``model`` on ``image``; replaying it reruns the net."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):  # warm-up outside the graph: allocator and lazy inits
            model(image)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = model(image)
    return graph.replay, out


def measure_network(
    name: str, model, judged: bool, warmup: int, repeats: int, quick: bool
) -> list[dict[str, object]]:
    """Rows for one network: each variant's ms, images/s, PSNR vs the baseline, verdict."""
    with no_tf32():
        return _measure(name, model, judged, warmup, repeats, quick)


def _measure(
    name: str, model, judged: bool, warmup: int, repeats: int, quick: bool
) -> list[dict[str, object]]:
    import torch

    from ..ops import available_backends, forced_backend

    h, w = SPEED_SIZE
    backends = [b for b in ("reference", "torchvision", "plugin") if b in available_backends()]
    image = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).cuda()
    results: dict[str, tuple[float, np.ndarray | None, str | None]] = {}
    nets = {}  # one copy per precision: casting back from FP16 would round the FP32 weights
    for label, precision, backend, graph in _variants(backends, quick):
        dtype = torch.float16 if precision == "fp16" else torch.float32
        if precision not in nets:
            nets[precision] = copy.deepcopy(model).to("cuda", dtype)
        net = nets[precision]
        x = image.to(dtype)
        try:
            with torch.no_grad(), forced_backend(backend):
                if graph:
                    fn, out = _graphed(net, x)
                    ms = time_ms(fn, warmup, repeats)
                else:
                    out = net(x)
                    ms = time_ms(lambda net=net, x=x: net(x), warmup, repeats)
            results[label] = (ms, out.float().cpu().numpy(), None)
        except torch.cuda.OutOfMemoryError:
            results[label] = (math.nan, None, "skipped: out of GPU memory")
        except Exception as exc:  # one variant's failure must not lose the others
            first = (str(exc).strip().splitlines() or [""])[0]
            results[label] = (math.nan, None, f"failed: {type(exc).__name__}: {first}"[:160])
            log.warning("network %s %s %s", name, label, results[label][2])
        torch.cuda.empty_cache()
    del nets
    torch.cuda.empty_cache()
    results.update(_onnxruntime_cuda(model, image, warmup, repeats))
    return _rows(name, results, judged)


def _rows(name: str, results, judged: bool) -> list[dict[str, object]]:
    times = {k: v[0] for k, v in results.items() if math.isfinite(v[0])}
    ratios = speedups(times, BASELINE)
    reference = results[BASELINE][1]
    rows = []
    for label, (ms, out, error) in results.items():
        row: dict[str, object] = {"group": f"{name} {SPEED_SIZE[0]}x{SPEED_SIZE[1]}"}
        row["impl"] = label
        if error is not None:
            row["status"] = error
            rows.append(row)
            continue
        precision = "fp16" if "fp16" in label else "fp32"
        value = psnr(reference, out) if reference is not None and out is not None else math.nan
        limit = DEFAULT_THRESHOLDS[precision].min_psnr
        row.update(
            {
                "ms": ms,
                "images/s": 1000.0 / ms,
                "speedup": ratios.get(label),
                "PSNR vs fp32 dB": value,
                "min PSNR dB": limit if judged else None,
                "status": ("passed" if value >= limit else "FAILED") if judged else "reported",
            }
        )
        rows.append(row)
    return rows


def _onnxruntime_cuda(model, image, warmup: int, repeats: int):
    """ONNX Runtime with its CUDA provider on the exported FP32 model, where it exists."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        log.info("ONNX Runtime has no CUDA provider here: its row is left out")
        return {}
    import tempfile
    from pathlib import Path

    from ..export import export_onnx
    from ..runtime.onnxruntime_backend import OnnxRuntimeBackend

    label = "onnxruntime cuda fp32"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "net.onnx"
        try:
            export_onnx(model, path, pdf_op="custom", precision="fp32")
            backend = OnnxRuntimeBackend(path, providers="cuda")
            x = image.cpu().numpy()
            with contextlib.closing(backend):
                out = backend.infer(x)
                ms = time_ms(lambda: backend.infer(x), warmup, repeats)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            return {label: (math.nan, None, f"failed: {type(exc).__name__}: {first}"[:160])}
    return {label: (ms, out, None)}


def check(stage, warmup: int, repeats: int, quick: bool) -> None:
    """Fill the network stage; it fails when a judged variant misses its PSNR threshold."""
    from ..runtime.torch_backend import load_model

    stage.tolerances = {
        "parity": "PSNR of each output against eager FP32 with the reference PDF op on one "
        f"random {SPEED_SIZE[0]}x{SPEED_SIZE[1]} image; shipped weights judged with saphnet "
        f"compare's thresholds (FP32 >= {DEFAULT_THRESHOLDS['fp32'].min_psnr:g} dB, FP16 >= "
        f"{DEFAULT_THRESHOLDS['fp16'].min_psnr:g} dB); the paper config (random weights) reported",
        "timing": f"CUDA-event median of {repeats} forwards after {warmup} warm-up runs, batch 1, "
        "TF32 off; speedup = eager FP32 reference ms / ms; ONNX Runtime times include host copies",
    }
    networks = [("shipped", load_model(), True)]
    networks.append(("paper", paper_network(), False))
    for name, model, judged in networks:
        stage.rows += measure_network(name, model, judged, warmup, repeats, quick)
    failed = [r for r in stage.rows if str(r.get("status")).lower().startswith("failed")]
    if failed:
        stage.status = FAILED
        stage.reason = "failed or below the PSNR threshold: " + ", ".join(
            f"{r['group']} {r['impl']}" for r in failed
        )
