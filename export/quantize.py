"""``quantize_onnx``: an exported FP32 file -> an INT8 file with explicit Q/DQ nodes.

Explicit quantization (QuantizeLinear/DequantizeLinear pairs in the ONNX file) is what
TensorRT 10 and 11 recommend over the deprecated implicit calibrator, and ONNX Runtime's
CPU integer kernels run the same format. ONNX Runtime's ``quantize_static`` writes it
for both targets:

* ``tensorrt``: symmetric INT8 (zero point 0) activations and weights, per-channel
  weight scales (axis 0 for Conv, 1 for ConvTranspose), per-tensor activation scales,
  on Conv, ConvTranspose and MatMul; biases stay float (TensorRT fuses them itself).
* ``cpu``: what ONNX Runtime's x86 kernels run fastest (measured in FACTS and
  ``benchmarks/quantization.py``): unsigned asymmetric activations with signed
  symmetric per-channel weights (U8S8), on Conv only, weights in 7 bits
  (``reduce_range``) so CPUs without VNNI do not saturate.

NVIDIA Model Optimizer's ONNX PTQ was tried first (see the README's INT8 section): its
``[onnx]`` extra pins onnxruntime-gpu and onnx 1.21, its default FP16 pass needs
TensorRT to type our custom node, and its output drops our metadata and puts Q/DQ on
the PDF op's input; ONNX Runtime's quantizer needs nothing beyond our base install.

The ``saphnet::PDFConv`` nodes are not quantized and none of their inputs comes
through a Q/DQ pair (:func:`keep_pdf_inputs_float`): the plugin computes in FP16 with
FP32 sampling coordinates, and INT8 offsets would move every sample by up to a
quantization step of the offset range.

Sensitivity: the layers whose quantization costs most are left in floating point
(FP16 under TensorRT 10's FP16 flag, FP32 on the CPU) until the whole network meets
``min_psnr`` against the FP32 file on the calibration tiles. Each layer is measured
alone (the network with only that layer quantized); errors of independent layers add
up roughly in MSE, which picks how many to keep float, and the result is then checked
by running the quantized network itself.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ..errors import SaphnetError, first_line
from ..files import atomic_output, check_writable
from ..pdf_identity import DOMAIN, OP_TYPE
from .calibration import TileReader
from .metadata import PREFIX, ExportMetadata

log = logging.getLogger(__name__)

QUANTIZATION_KEY = PREFIX + "quantization"
"""Metadata entry of a quantized file: target, layers kept float, calibration, PSNR."""
DEFAULT_MIN_PSNR = 40.0
"""dB against FP32 on the calibration tiles (the README's INT8 section has the
measurements it comes from)."""
PDF_FLOAT_INPUTS = (0, 1, 2)
"""PDFConv inputs that stay float: features, offset (sampling coordinates), mask."""


@dataclass(frozen=True)
class Target:
    """How one runtime wants its Q/DQ nodes."""

    name: str
    op_types: tuple[str, ...]
    symmetric_activations: bool
    float_precision: str
    """What a layer left unquantized runs in there (for messages)."""

    def quantize_args(self) -> dict[str, object]:
        from onnxruntime.quantization import QuantFormat, QuantType

        return {
            "quant_format": QuantFormat.QDQ,
            "op_types_to_quantize": list(self.op_types),
            "per_channel": True,
            # 7-bit weights on the CPU target: x86 CPUs without VNNI (this one reports
            # AVX2 only) multiply u8 x s8 pairs into saturating int16 sums
            # (vpmaddubsw); measured here, full-range U8S8 lost 19 dB to it.
            "reduce_range": not self.symmetric_activations,
            "weight_type": QuantType.QInt8,
            "activation_type": QuantType.QInt8 if self.symmetric_activations else QuantType.QUInt8,
            "extra_options": {
                "ActivationSymmetric": self.symmetric_activations,
                "WeightSymmetric": True,
                # TensorRT takes float biases and folds them; int32 bias DQs are ORT's CPU layout.
                "QuantizeBias": not self.symmetric_activations,
                # The U8 quantizer drops a Relu before a Q (uint8 clamps at zero); the
                # PDFConv nodes read that tensor in float and need it.
                "QDQKeepRemovableActivations": True,
            },
        }


TARGETS = {
    "tensorrt": Target("tensorrt", ("Conv", "ConvTranspose", "MatMul"), True, "FP16"),
    "cpu": Target("cpu", ("Conv",), False, "FP32"),
}


@dataclass
class QuantizationReport:
    """What ``quantize_onnx`` did; stored (without ``sensitivity``) in the file's metadata."""

    target: str
    calibration: str
    tiles: int
    tile_side: int
    min_psnr: float
    psnr: float = math.nan
    """The written file against FP32 on the calibration tiles, dB."""
    max_abs: float = math.nan
    quantized_layers: int = 0
    kept_float: list[str] = field(default_factory=list)
    """ONNX node names left unquantized (asked for, then the costliest)."""
    all_int8_psnr: float = math.nan
    """Every candidate layer quantized, dB (before any layer was kept float)."""
    sensitivity: dict[str, float] = field(default_factory=dict)
    """Node name -> PSNR dB with only that layer quantized (empty when not measured)."""
    seconds: float = 0.0

    def as_metadata(self) -> str:
        data = {k: v for k, v in asdict(self).items() if k != "sensitivity"}
        return json.dumps(_finite(data), sort_keys=True)


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def candidate_layers(model: onnx.ModelProto, target: Target) -> list[onnx.NodeProto]:
    """The nodes the target quantizes, in graph order."""
    return [
        n for n in model.graph.node if n.domain in ("", "ai.onnx") and n.op_type in target.op_types
    ]


def layer_label(node: onnx.NodeProto) -> str:
    """The PyTorch module a node came from (``levels.0.decoder.head``), else its name."""
    import ast

    scopes = next(
        (p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None
    )
    try:
        names = ast.literal_eval(scopes) if scopes else []
    except (ValueError, SyntaxError):
        names = []
    return names[-2] if len(names) >= 2 and names[-2] else node.name


def match_layers(model: onnx.ModelProto, target: Target, patterns: Sequence[str]) -> list[str]:
    """Node names of candidate layers matching ``patterns`` (node names or module names,
    shell wildcards allowed); a pattern that matches nothing is a one-line error."""
    layers = candidate_layers(model, target)
    found: list[str] = []
    for pattern in patterns:
        hits = [
            n.name
            for n in layers
            if fnmatch.fnmatchcase(n.name, pattern) or fnmatch.fnmatchcase(layer_label(n), pattern)
        ]
        if not hits:
            raise SaphnetError(
                f"--keep-fp {pattern!r} matches no {'/'.join(target.op_types)} layer; give a node "
                f"name (e.g. {layers[0].name if layers else 'node_conv2d'}) or a module name with wildcards "
                "(e.g. 'levels.0.decoder.*')"
            )
        found += [h for h in hits if h not in found]
    return found


def keep_pdf_inputs_float(model: onnx.ModelProto) -> int:
    """Feed every PDFConv node its float inputs where the quantizer handed it a
    dequantized copy (a tensor shared with a quantized Conv), and drop Q/DQ pairs left
    without consumers. Returns the number of inputs rewired."""
    producers = {o: n for n in model.graph.node for o in n.output}
    rewired = 0
    for node in model.graph.node:
        if (node.domain, node.op_type) != (DOMAIN, OP_TYPE):
            continue
        for i in PDF_FLOAT_INPUTS:
            dq = producers.get(node.input[i])
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue  # a DQ of a constant: not an activation, leave it
            node.input[i] = q.input[0]
            rewired += 1
    _drop_unused_qdq(model)
    return rewired


def _drop_unused_qdq(model: onnx.ModelProto) -> None:
    while True:
        used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
        dead = [
            n
            for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.output[0] not in used
        ]
        if not dead:
            return
        for n in dead:
            model.graph.node.remove(n)


def pdf_inputs_through_qdq(model: onnx.ModelProto) -> list[str]:
    """``node:input`` of every PDFConv offset or mask input that a DequantizeLinear
    produces (the layout check: it must be empty)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    found = []
    for node in model.graph.node:
        if (node.domain, node.op_type) == (DOMAIN, OP_TYPE):
            for i, what in ((1, "offset"), (2, "mask")):
                p = producers.get(node.input[i])
                if p is not None and p.op_type == "DequantizeLinear":
                    found.append(f"{node.name}:{what}")
    return found


class Evaluator:
    """Runs candidate files on the calibration tiles and scores them against FP32."""

    def __init__(self, fp32_path: Path, tiles: Sequence[np.ndarray], threads: int = 0) -> None:
        self.tiles, self.threads = list(tiles), threads
        self.reference = self.run(fp32_path)

    def _session(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise SaphnetError(f"ONNX Runtime cannot load {path.name}: {first_line(exc)}") from None

    def run(self, path: Path) -> list[np.ndarray]:
        session = self._session(path)
        name = session.get_inputs()[0].name
        return [session.run(None, {name: tile})[0] for tile in self.tiles]

    def score(self, path: Path) -> tuple[float, float, float]:
        """(PSNR dB, MSE, max abs) of ``path`` against FP32 over all tiles (range 1)."""
        outputs = self.run(path)
        sq = sum(
            float(np.sum((o.astype(np.float64) - r) ** 2))
            for o, r in zip(outputs, self.reference, strict=True)
        )
        count = sum(r.size for r in self.reference)
        max_abs = max(
            float(np.max(np.abs(o - r))) for o, r in zip(outputs, self.reference, strict=True)
        )
        mse = sq / count
        return (math.inf if mse == 0 else -10.0 * math.log10(mse)), mse, max_abs


def _mse(psnr: float) -> float:
    return 0.0 if math.isinf(psnr) else 10.0 ** (-psnr / 10.0)


def float_layer_order(sensitivity: dict[str, float]) -> list[str]:
    """Layers from the costliest to the cheapest (lowest PSNR alone first)."""
    return sorted(sensitivity, key=lambda name: (sensitivity[name], name))


def layers_to_keep(sensitivity: dict[str, float], all_int8_psnr: float, min_psnr: float) -> int:
    """How many of the costliest layers to keep float so the network is predicted to
    meet ``min_psnr``: each layer's error energy alone (MSE) is taken as its share of
    the whole network's, and the shares are removed costliest first."""
    order = float_layer_order(sensitivity)
    shares = [_mse(sensitivity[name]) for name in order]
    total = sum(shares)
    if total == 0 or all_int8_psnr >= min_psnr:
        return 0
    target = _mse(min_psnr)
    whole = _mse(all_int8_psnr)
    removed = 0.0
    for k, share in enumerate(shares, start=1):
        removed += share
        if whole * (1.0 - removed / total) <= target:
            return k
    return len(order)


class Quantizer:
    """One calibration (ranges cached in a work folder), then as many quantized files
    as the sensitivity search asks for, each with a different set of float layers."""

    def __init__(
        self, fp32_path: Path, target: Target, tiles: Sequence[np.ndarray], work: Path
    ) -> None:
        self.fp32_path, self.target, self.tiles, self.work = fp32_path, target, list(tiles), work
        self.cache = work / "calibration.json"
        self.count = 0

    def write(
        self,
        path: Path,
        exclude: Sequence[str] = (),
        only: Sequence[str] | None = None,
        progress: Callable[[], None] | None = None,
    ) -> Path:
        """Quantize into ``path``; the first call calibrates (``progress`` per tile)."""
        import onnxruntime.quantization as ortq

        reader = (
            None if self.cache.is_file() else TileReader(self._input_name(), self.tiles, progress)
        )
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(
            logging.ERROR
        )  # the quantizer's "consider pre-processing" nags
        try:
            ortq.quantize_static(
                str(self.fp32_path),
                str(path),
                reader,
                nodes_to_quantize=list(only) if only is not None else None,
                nodes_to_exclude=list(exclude),
                calibrate_method=ortq.CalibrationMethod.MinMax,
                calibration_cache_path=str(self.cache),
                **self.target.quantize_args(),
            )
        except SaphnetError:
            raise
        except Exception as exc:  # the quantizer raises ValueError, RuntimeError, ORT errors
            raise SaphnetError(
                f"ONNX Runtime could not quantize {self.fp32_path.name}: {first_line(exc)}"
            ) from None
        finally:
            logging.getLogger().setLevel(quiet)
        model = onnx.load(str(path))
        keep_pdf_inputs_float(model)
        onnx.save(model, str(path))
        self.count += 1
        return path

    def _input_name(self) -> str:
        model = onnx.load(str(self.fp32_path), load_external_data=False)
        weights = {t.name for t in model.graph.initializer}
        return next(i.name for i in model.graph.input if i.name not in weights)

    def scratch(self) -> Path:
        return self.work / f"candidate-{self.count}.onnx"


def _read_fp32(path: Path) -> tuple[onnx.ModelProto, ExportMetadata]:
    if not path.is_file():
        raise SaphnetError(f"ONNX file {path} does not exist; make one with saphnet export")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for a non-ONNX file
        raise SaphnetError(f"{path} is not an ONNX model ({type(exc).__name__})") from None
    try:
        meta = ExportMetadata.from_props({p.key: p.value for p in model.metadata_props})
    except KeyError as exc:
        raise SaphnetError(
            f"{path} has no saphnet metadata ({exc.args[0]}); export it with saphnet export"
        ) from None
    if meta.precision != "fp32":
        raise SaphnetError(
            f"{path.name} is {meta.precision}; quantize an FP32 export (saphnet export --precision fp32)"
        )
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise SaphnetError(f"{path.name} is already quantized; quantize the FP32 export")
    return model, meta


def quantize_onnx(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    tiles: Sequence[np.ndarray],
    target: str = "tensorrt",
    keep_fp: Sequence[str] = (),
    min_psnr: float | None = DEFAULT_MIN_PSNR,
    calibration: str = "default",
    force: bool = False,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> QuantizationReport:
    """Quantize an FP32 export to ``out_path`` (atomically) and return what was done.

    Args:
        fp32_path: a file made by ``saphnet export`` (FP32, any op form).
        out_path: the INT8 ``.onnx``; an existing one is kept unless ``force``.
        tiles: calibration inputs, (1, 3, h, w) float32 in [0, 1] each.
        target: ``tensorrt`` or ``cpu`` (see the module docstring).
        keep_fp: layers never quantized: node names or module names, wildcards allowed.
        min_psnr: dB against FP32 on ``tiles`` the result must meet, keeping the
            costliest layers float; None quantizes every candidate but ``keep_fp``.
        calibration: what the tiles came from (recorded in the metadata).
        progress: ``progress(stage, total)`` returns a callable ticked once per step.
    """
    start = time.perf_counter()
    if target not in TARGETS:
        raise SaphnetError(f"unknown target {target!r}; choose {' or '.join(TARGETS)}")
    spec = TARGETS[target]
    source = Path(fp32_path)
    model, meta = _read_fp32(source)
    check_writable(out_path, force)
    if not tiles:
        raise SaphnetError("no calibration tiles; give --calibration DIR with images")
    asked = match_layers(model, spec, keep_fp)
    candidates = [n.name for n in candidate_layers(model, spec) if n.name not in asked]
    tick = progress or (lambda stage, total: lambda: None)
    side = int(max(t.shape[-1] for t in tiles))
    report = QuantizationReport(target, calibration, len(tiles), side, min_psnr or math.nan)
    with tempfile.TemporaryDirectory(prefix="saphnet-quantize-") as folder:
        work = Path(folder)
        quantizer = Quantizer(source, spec, tiles, work)
        evaluator = Evaluator(source, tiles)
        best = quantizer.write(
            work / "all.onnx", exclude=asked, progress=tick("calibrate", len(tiles))
        )
        report.all_int8_psnr, _, report.max_abs = evaluator.score(best)
        report.psnr, kept = report.all_int8_psnr, list(asked)
        log.info("every layer in INT8: %.2f dB against FP32 on %d tiles", report.psnr, len(tiles))
        if min_psnr is not None and report.psnr < min_psnr and candidates:
            step = tick("sensitivity", len(candidates))
            for name in candidates:
                path = quantizer.write(quantizer.scratch(), only=[name])
                report.sensitivity[name] = evaluator.score(path)[0]
                path.unlink()
                step()
            order = float_layer_order(report.sensitivity)
            k = layers_to_keep(report.sensitivity, report.all_int8_psnr, min_psnr)
            while True:
                kept = [*asked, *order[:k]]
                best = quantizer.write(work / f"keep-{k}.onnx", exclude=kept)
                report.psnr, _, report.max_abs = evaluator.score(best)
                log.info("%d layers kept %s: %.2f dB", len(kept), spec.float_precision, report.psnr)
                if report.psnr >= min_psnr or k >= len(order):
                    break
                k += max(1, (len(order) - k) // 8)  # the estimate fell short: keep more
                k = min(k, len(order))
            if report.psnr < min_psnr:
                raise SaphnetError(
                    f"even with every layer in {spec.float_precision} the file reaches "
                    f"{report.psnr:.1f} dB < --min-psnr {min_psnr:g}; lower --min-psnr"
                )
        report.kept_float = kept
        report.quantized_layers = len(candidate_layers(model, spec)) - len(kept)
        final = onnx.load(str(best))
        stamp(final, meta, report, time.perf_counter() - start)
        onnx.checker.check_model(final, full_check=True)
        with atomic_output(out_path, force=force) as tmp:
            onnx.save(final, str(tmp))
    return report


def stamp(
    model: onnx.ModelProto, meta: ExportMetadata, report: QuantizationReport, seconds: float
) -> None:
    """The source's metadata with precision ``int8``, plus the quantization record."""
    report.seconds = round(seconds, 1)
    props = {
        **meta.as_props(),
        PREFIX + "precision": "int8",
        QUANTIZATION_KEY: report.as_metadata(),
    }
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    model.producer_name = "saphnet"


def read_quantization(props: dict[str, str]) -> dict[str, object] | None:
    """The quantization record of a file's metadata, None for a float file."""
    text = props.get(QUANTIZATION_KEY)
    return json.loads(text) if text else None
