"""``saphnet selftest``: the CPU run end to end (what CI can run), and every part of the GPU
stages that can be checked without a GPU: shape grid, tolerances, verdicts, the
sanitizer's and the library check's parsing, peak lookup, speed ratios, report format."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from saphnet import plugins
from saphnet.cli import main
from saphnet.errors import SaphnetError
from saphnet.files import sha256_file
from saphnet.model import SAPHNetConfig
from saphnet.model.blocks import PDFConv2d
from saphnet.model.complexity import pdf_layer_shapes
from saphnet.ops import forced_backend, output_size, pdf_conv, pdf_conv_reference
from saphnet.ops.pdf_conv import PDFGeometry
from saphnet.selftest import (
    GPU_STAGES,
    STAGES,
    environment,
    kernel_check,
    network_speed,
    sanitizer,
    shapes,
)
from saphnet.selftest.op_speed import fp16_peak
from saphnet.selftest.report import (
    FAILED,
    PASSED,
    SKIPPED,
    Report,
    Stage,
    StageSkipped,
    _panels,
    run_stage,
    speedups,
    to_json,
    to_markdown,
)
from saphnet.selftest.sanitizer_driver import DONE, MISMATCH
from saphnet.selftest.tensorrt_stage import implementation_verdict, pdf_layers

try:
    plugins.library_path()
    HAVE_LIBRARY = True
except SaphnetError:
    HAVE_LIBRARY = False


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """One ``saphnet selftest --quick`` run, shared by the tests that read its report."""
    folder = tmp_path_factory.mktemp("selftest")
    status = main(["selftest", "-o", str(folder), "--quick"])
    return status, folder, json.loads((folder / "selftest.json").read_text())


@pytest.mark.slow
def test_cpu_run_passes_and_says_why_gpu_stages_skip(cpu_run):
    status, _, report = cpu_run
    stages = {s["name"]: s for s in report["stages"]}
    assert list(stages) == [name for name, _, _ in STAGES]
    assert status == report["exit_status"] == 0
    assert stages["environment"]["status"] == PASSED
    assert stages["onnxruntime"]["status"] == PASSED
    if not torch.cuda.is_available():
        for name in GPU_STAGES:
            assert stages[name]["status"] == SKIPPED
            assert "no CUDA GPU" in stages[name]["reason"]
    for stage in stages.values():
        assert stage["status"] in (PASSED, SKIPPED, FAILED)
        assert stage["status"] != FAILED, stage["reason"]


@pytest.mark.slow
def test_cpu_run_reports_environment_and_library_checksum(cpu_run):
    info = next(s for s in cpu_run[2]["stages"] if s["name"] == "environment")["info"]
    assert info["torch"] == torch.__version__
    assert "CPUExecutionProvider" in info["onnxruntime providers"]
    if HAVE_LIBRARY:
        assert info["plugin library"] == str(plugins.library_path())
        assert info["plugin SHA-256"] == sha256_file(plugins.library_path())
        assert info["plugin API version"] == plugins.version()


@pytest.mark.slow
def test_cpu_run_checks_host_build_on_every_variant_within_tolerance(cpu_run):
    stage = next(s for s in cpu_run[2]["stages"] if s["name"] == "kernels-host")
    if not HAVE_LIBRARY:
        assert stage["status"] == SKIPPED and "no plugin library" in stage["reason"]
        return
    rows = stage["rows"]
    variants = {r["variant"] for r in rows}
    assert variants == {v.label for v in shapes.host_variants()}
    assert {r["shape"] for r in rows} == {s.label for s in shapes.host_grid()}
    assert len(rows) == len(shapes.host_grid()) * len(shapes.host_variants())
    for row in rows:
        tolerance = kernel_check.TOLERANCES[
            "float16" if " f16 off" in row["variant"] else "float32"
        ]
        assert row["nonfinite"] == 0
        assert 0 < row["max_rel"] <= tolerance.max_rel  # 0 would mean nothing was compared
        assert row["mean_abs"] <= row["max_abs"]
        assert row["status"] == PASSED
    assert "float16" in stage["tolerances"] and "2^-9" in stage["tolerances"]["float16"]


@pytest.mark.slow
def test_cpu_run_onnxruntime_parity_meets_compare_thresholds(cpu_run):
    stage = next(s for s in cpu_run[2]["stages"] if s["name"] == "onnxruntime")
    assert stage["rows"]
    for row in stage["rows"]:
        assert row["model"] == "custom fp32"
        assert row["PSNR dB"] == "inf" or row["PSNR dB"] >= 60
        assert row["max_abs"] <= 1e-3 and row["nonfinite"] == 0
    assert "PSNR >= 60 dB" in stage["tolerances"]["fp32"]


@pytest.mark.slow
def test_cpu_run_writes_markdown_and_png_and_refuses_to_overwrite(cpu_run, capsys):
    _, folder, _report = cpu_run
    md = (folder / "selftest.md").read_text()
    assert md.startswith("# saphnet selftest: passed")
    assert "| Host build vs float64 reference (CPU) | " in md
    assert ("Tolerances:" in md and "no CUDA GPU" in md) or torch.cuda.is_available()
    with Image.open(folder / "selftest.png") as png:
        assert png.format == "PNG" and png.width > 500
    assert main(["selftest", "-o", str(folder), "--quick"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err


def test_model_shapes_are_the_networks_pdf_layers():
    paper = [s for s in shapes.model_shapes(((720, 1280),)) if s.label.startswith("paper")]
    dims = {(s.batch, s.c_in, s.height, s.width, s.kernel) for s in paper}
    # level 3: four patches of 360x640, level 2: two halves joined, level 1: the image, at 1/4
    assert dims == {
        (4, 128, 90, 160, (5, 5)),
        (2, 128, 90, 320, (5, 5)),
        (1, 128, 180, 320, (5, 5)),
    }
    assert all(s.out_size == (s.height, s.width) for s in paper)
    # the DESIGN's 720p workload: 47 GFLOP per op at 180x320
    assert paper[-1].flop == pytest.approx(2 * 128 * 57600 * 3200)
    shipped = shapes.shipped_config()
    ours = [s for s in shapes.model_shapes(((256, 256),)) if s.label.startswith("shipped")]
    assert {s.c_in for s in ours} == {shipped.widths[2]}
    assert {s.kernel for s in ours} == {(shipped.pdf_kernel,) * 2}


def test_pdf_layer_shapes_count_every_pdf_call():
    config = SAPHNetConfig()
    calls = pdf_layer_shapes(config, 64, 64)
    per_level = config.encoder_resblocks + config.decoder_resblocks
    assert len(calls) == config.levels * per_level == 18
    modules = sum(isinstance(m, PDFConv2d) for m in __import__("saphnet").model.SAPHNet().modules())
    assert len(calls) == modules


def test_grids_cover_what_the_issue_asks():
    full, quick = shapes.cuda_grid(quick=False), shapes.cuda_grid(quick=True)
    assert shapes.UHD in full and shapes.UHD not in quick
    assert any("720x1280" in s.label for s in full)
    assert not any("720x1280" in s.label for s in quick)
    for grid in (full, quick, shapes.host_grid()):
        assert {1, 4} <= {s.batch for s in grid}
        assert any(s.stride != (1, 1) for s in grid)
        assert any(s.dilation != (1, 1) for s in grid)
        assert any(len(set(s.pads)) > 1 for s in grid)  # asymmetric
        assert any(s.height % 2 and s.width % 2 for s in grid)  # odd sizes
        assert any(all(c % 8 for c in (s.c_in, s.c_out)) for s in grid)
    combos = {(v.dtype, v.offset_dtype, v.mask_dtype, v.layout) for v in shapes.cuda_variants()}
    assert {"float32", "float16"} == {c[0] for c in combos} == {c[1] for c in combos}
    assert {"float32", "float16"} == {c[2] for c in combos}
    assert {"nchw", "nhwc8"} == {c[3] for c in combos}
    assert {v.algo for v in shapes.cuda_variants()} == {"direct", "fused"}
    assert all(v.algo == "direct" for v in shapes.cuda_variants() if v.dtype == "float32")


@pytest.mark.parametrize("shape", [*shapes.GEOMETRY, shapes.UHD], ids=lambda s: s.label)
def test_out_size_matches_the_reference(shape):
    top, left, bottom, right = shape.pads
    if (top, left) == (bottom, right):
        geometry = PDFGeometry.of(shape.stride, (top, left), shape.dilation)
        assert shape.out_size == output_size(shape.height, shape.width, shape.kernel, geometry)
    if shape.height < 100:
        tensors = kernel_check.make_inputs(shape, "cpu")
        assert kernel_check.reference(shape, *tensors).shape[2:] == shape.out_size


def test_inputs_are_exact_in_float16():
    tensors = kernel_check.make_inputs(shapes.GEOMETRY[0], "cpu")
    for t in tensors:
        assert torch.equal(t.half().double(), t)
    assert tensors[1].abs().max() <= kernel_check.OFFSET_RANGE


def test_asymmetric_pads_reference_equals_symmetric_reference_crop():
    shape = shapes.OpShape("p", 1, 3, 4, 9, 10, (3, 3), pads=(2, 1, 0, 0))
    sym = shapes.OpShape("s", 1, 3, 4, 9, 10, (3, 3), pads=(2, 1, 2, 1))
    x, offset, mask, weight, bias = kernel_check.make_inputs(sym, "cpu")
    ho, wo = shape.out_size
    full = pdf_conv_reference(x, offset, mask, weight, bias, padding=(2, 1))
    got = kernel_check.reference(shape, x, offset[..., :ho, :wo], mask[..., :ho, :wo], weight, bias)
    assert torch.allclose(got, full[..., :ho, :wo], atol=1e-12)


def test_errors_and_verdict_against_the_tolerance():
    expected = torch.tensor([1.0, -2.0, 4.0], dtype=torch.float64)
    f16 = shapes.Variant("float16", "float16", "float16", "nchw", "fused")
    tol = kernel_check.TOLERANCES["float16"].max_rel
    at_tolerance = expected.clone()
    at_tolerance[2] += 4.0 * tol
    metrics = kernel_check.errors(expected, at_tolerance)
    assert metrics["scale"] == 4.0 and metrics["max_abs"] == pytest.approx(4 * tol)
    assert metrics["mean_abs"] == pytest.approx(4 * tol / 3)
    assert metrics["mean_rel"] == pytest.approx(tol / 3)
    assert kernel_check.verdict(f16, metrics) == (True, pytest.approx(1.0))
    over = expected.clone()
    over[2] += 4.0 * tol * 1.01
    assert kernel_check.verdict(f16, kernel_check.errors(expected, over))[0] is False
    f32 = shapes.Variant("float32", "float32", "float32", "nchw", "direct")
    assert kernel_check.verdict(f32, metrics)[0] is False  # FP32 is held much tighter
    nan = expected.clone()
    nan[0] = math.nan
    bad = kernel_check.errors(expected, nan)
    assert bad["nonfinite"] == 1 and kernel_check.verdict(f16, bad)[0] is False


@pytest.mark.skipif(not HAVE_LIBRARY, reason="plugin library not built (make plugins)")
def test_kernel_check_fails_a_wrong_kernel(monkeypatch):
    real = plugins.host_forward

    def off_by_a_little(*args, **kwargs):
        y = real(*args, **kwargs)
        y.flat[0] += np.abs(y).max() * 0.01
        return y

    monkeypatch.setattr(plugins, "host_forward", off_by_a_little)
    stage = Stage("kernels-host", "t", True, status=PASSED)
    grid = shapes.GEOMETRY[:1]
    kernel_check.check(stage, grid, shapes.host_variants()[:2], "cpu")
    assert stage.status == FAILED
    assert stage.reason == "2 of 2 cases failed (outside tolerance, or refused)"
    assert all(r["status"] == "FAILED" and r["error/tolerance"] > 100 for r in stage.rows)


@pytest.mark.skipif(not HAVE_LIBRARY, reason="plugin library not built (make plugins)")
def test_host_forward_nhwc8_layout_equals_nchw():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 11, 7, 9)).astype(np.float16)
    offset = rng.uniform(-2, 2, (2, 18, 7, 9)).astype(np.float32)
    mask = rng.uniform(0, 1, (2, 9, 7, 9)).astype(np.float16)
    weight = (rng.standard_normal((13, 11, 3, 3)) / 10).astype(np.float16)
    nchw = plugins.host_forward(x, offset, mask, weight, padding=1)
    nhwc8 = plugins.host_forward(x, offset, mask, weight, padding=1, layout="nhwc8")
    assert nhwc8.shape == nchw.shape == (2, 13, 7, 9)
    assert np.array_equal(nhwc8, nchw)
    packed = plugins.pack_nhwc8(x)
    assert packed.shape == (2, 7, 9, 16) and not packed[..., 11:].any()


def test_forced_backend_routes_auto_and_restores():
    calls = []
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 5, 5, generator=g)
    offset, mask = torch.zeros(1, 18, 5, 5), torch.ones(1, 9, 5, 5)
    weight = torch.randn(3, 2, 3, 3, generator=g)
    from saphnet.ops import dispatch

    dispatch.register_backend(
        "spy", lambda *a: calls.append(1) or pdf_conv_reference(*a), lambda *_: False, -5
    )
    with forced_backend("spy"):
        pdf_conv(x, offset, mask, weight, padding=1)
    pdf_conv(x, offset, mask, weight, padding=1)
    assert calls == [1]
    assert "spy" in dispatch.available_backends()
    with pytest.raises(ValueError, match="unknown backend"), forced_backend("nope"):
        pass


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H200", 989.4),
        ("NVIDIA H200 NVL", 835.5),
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", 835.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA L4", 121.0),
        ("Tesla T4", 65.0),
        ("NVIDIA GeForce GTX 1080", None),
        ("Orin (nvgpu)", None),
    ],
)
def test_fp16_peak_lookup_by_device_name(name, peak):
    assert fp16_peak(name) == peak


def test_speedups_are_baseline_over_time():
    ratios = speedups({"ours": 2.0, "torchvision": 6.0, "reference": 12.0}, "torchvision")
    assert ratios == {"ours": 3.0, "torchvision": 1.0, "reference": 0.5}
    assert speedups({"ours": 2.0}, "torchvision") == {"ours": None}


def test_network_variants_and_psnr():
    full = network_speed._variants(["reference", "torchvision", "plugin"], quick=False)
    labels = [v[0] for v in full]
    assert labels[0] == network_speed.BASELINE and len(labels) == len(set(labels))
    assert {
        "eager fp16 plugin",
        "eager fp16 reference",
        "graph fp16 plugin",
        "graph fp32 plugin",
    } <= set(labels)
    quick = [v[0] for v in network_speed._variants(["reference", "plugin"], quick=True)]
    assert quick == [network_speed.BASELINE, "eager fp16 plugin", "graph fp16 plugin"]
    ref = np.zeros((1, 3, 4, 4))
    assert network_speed.psnr(ref, ref.copy()) == math.inf
    assert network_speed.psnr(ref, ref + 0.1) == pytest.approx(20.0)
    assert math.isnan(network_speed.psnr(ref, ref + np.nan))


def test_paper_network_has_no_zero_parameters():
    model = network_speed.paper_network()
    assert all(p.any() for p in model.parameters())


def test_network_rows_judge_parity_and_ratios():
    out = np.full((1, 3, 8, 8), 0.5)
    results = {
        network_speed.BASELINE: (40.0, out, None),
        "eager fp16 plugin": (10.0, out + 1e-4, None),
        "eager fp32 plugin": (20.0, out + 0.01, None),
        "graph fp16 plugin": (float("nan"), None, "failed: RuntimeError: capture failed"),
    }
    rows = {r["impl"]: r for r in network_speed._rows("shipped", results, judged=True)}
    assert rows["eager fp16 plugin"]["speedup"] == 4.0
    assert rows["eager fp16 plugin"]["PSNR vs fp32 dB"] == pytest.approx(80.0)
    assert rows["eager fp16 plugin"]["status"] == "passed"
    assert rows["eager fp32 plugin"]["status"] == "FAILED"  # 40 dB < 60 dB for FP32
    assert rows["graph fp16 plugin"]["status"].startswith("failed: RuntimeError")
    reported = network_speed._rows("paper", results, judged=False)
    assert {r.get("status") for r in reported if "ms" in r} == {"reported"}


@pytest.mark.parametrize(
    ("returncode", "output", "status"),
    [
        (0, f"x ok\n{DONE}\n========= ERROR SUMMARY: 0 errors\n", PASSED),
        (
            86,
            "========= Invalid __global__ read of size 4\n========= ERROR SUMMARY: 3 errors\n",
            FAILED,
        ),
        (
            0,
            f"{DONE}\n========= RACECHECK SUMMARY: 2 hazards displayed (2 errors, 0 warnings)\n",
            FAILED,
        ),
        (
            MISMATCH,
            "k3 float16 fused nchw rel 1e-1 MISMATCH\n========= ERROR SUMMARY: 0 errors\n",
            FAILED,
        ),
        (1, "========= Error: Device not supported\n", SKIPPED),
        (None, "", SKIPPED),
        (139, "Segmentation fault\n", FAILED),
    ],
)
def test_sanitizer_output_is_interpreted(returncode, output, status):
    got, _, reason = sanitizer.interpret(returncode, output)
    assert got == status
    assert (reason == "") == (status == PASSED)


def test_sanitizer_stage_combines_tools():
    rows = [{"tool": t, "status": PASSED, "reason": ""} for t in sanitizer.TOOLS]
    assert sanitizer.combine(rows) == (PASSED, "")
    rows[1] = {"tool": "racecheck", "status": FAILED, "reason": "2 errors reported"}
    assert sanitizer.combine(rows) == (FAILED, "racecheck: 2 errors reported")
    skipped = [{"tool": t, "status": SKIPPED, "reason": "cannot run"} for t in sanitizer.TOOLS]
    assert sanitizer.combine(skipped) == (SKIPPED, "cannot run")


CUOBJDUMP = """
ELF file    1: libsaphnet_plugins.1.sm_75.cubin
ELF file    2: libsaphnet_plugins.2.sm_80.cubin
ELF file    3: libsaphnet_plugins.3.sm_90a.cubin
"""


def test_library_architectures_and_native_match():
    assert environment.parse_architectures(CUOBJDUMP) == {"75", "80", "90a"}
    assert environment.parse_architectures("PTX file 1: x.sm_90.ptx") == {"90"}
    sass = {"75", "80", "90a"}
    assert environment.runs_natively(sass, (8, 6))  # sm_80 code runs on sm_86
    assert environment.runs_natively(sass, (9, 0))  # sm_90a on sm_90
    assert not environment.runs_natively(sass, (10, 0))
    assert not environment.runs_natively({"86"}, (8, 0))
    assert not environment.runs_natively(set(), (9, 0))


def test_use_library_switches_what_loads(monkeypatch, tmp_path):
    monkeypatch.setenv(plugins.ENV_VAR, str(tmp_path / "missing.so"))  # restored afterwards
    target = tmp_path / plugins.LIBRARY_NAME
    target.write_bytes(b"")
    environment.use_library(target)
    assert plugins.library_path() == target
    plugins.load_library.cache_clear()


def test_tensorrt_sidecar_implementation_is_read_and_judged():
    assert pdf_layers({"precision": "fp16"}) == (None, None, None)
    sidecar = {"pdf_implementation": "plugin", "pdf_ops": 18, "pdf_plugin_layers": 18}
    assert pdf_layers(sidecar) == ("plugin", 18, 18)
    assert implementation_verdict("custom", None) == "not recorded"
    assert implementation_verdict("custom", "plugin", 18, 18) == "passed"
    assert implementation_verdict("custom", "plugin", 18, 17) == "FAILED"
    assert implementation_verdict("custom", "function-deformconv", 18, 0) == "FAILED"
    assert implementation_verdict("custom", "tensorrt-deformconv") == "FAILED"
    assert implementation_verdict("deformconv", "tensorrt-deformconv", 18, 0) == "passed"
    assert implementation_verdict("deformconv", "plugin") == "FAILED"


def test_run_stage_skips_fails_and_keeps_going():
    log = __import__("logging").getLogger("test")

    def skip(stage):
        raise StageSkipped("no TensorRT")

    def broken(stage):
        stage.rows.append({"a": 1})
        raise RuntimeError("boom\nsecond line")

    report = Report({"device": "x"})
    report.stages.append(run_stage(Stage("a", "A", True), skip, log))
    report.stages.append(run_stage(Stage("b", "B", False), broken, log))
    assert report.stages[0].status == SKIPPED and report.stages[0].reason == "no TensorRT"
    assert report.stages[1].status == FAILED and report.stages[1].reason == "RuntimeError: boom"
    assert report.stages[1].rows == [{"a": 1}]
    assert report.exit_status == 0  # a speed stage never fails the run
    report.stages.append(run_stage(Stage("c", "C", True), broken, log))
    assert report.exit_status == 1


def test_report_format_json_markdown_and_plot_panels():
    stage = Stage("op-speed", "Operator speed", False, status=PASSED)
    stage.rows = [
        {"group": "paper", "impl": "ours fused float16", "ms": 2.0, "speedup": 3.0},
        {"group": "paper", "impl": "torchvision float16", "ms": 6.0, "speedup": 1.0},
    ]
    check = Stage("kernels-cuda", "CUDA kernels", True, status=PASSED)
    check.rows = [{"shape": "s", "variant": "v", "error/tolerance": 0.5, "PSNR": math.inf}]
    check.tolerances = {"float16": "max |error| <= 2^-9 x max |reference|"}
    report = Report({"device": "GPU"}, [check, stage])
    data = json.loads(to_json(report))
    assert data["stages"][0]["rows"][0]["PSNR"] == "inf"
    md = to_markdown(report)
    assert "| ours fused float16 | 2 | 3 |" in md.replace("| paper ", "")
    assert "- float16: max |error| <= 2^-9" in md
    panels = {title: bars for title, _, bars, _ in _panels(report)}
    assert panels["CUDA kernels"] == [("v", 0.5, "0.50")]
    assert ("ours fused float16", 2.0, "3.00x") in panels["Operator speed: paper"]


def _cuda_kernels_reason() -> str | None:
    if not torch.cuda.is_available():
        return "needs a CUDA GPU"
    if not HAVE_LIBRARY or not plugins.has_cuda():
        return "needs the plugin library with its CUDA kernels (make plugins with nvcc)"
    return None


needs_cuda_kernels = pytest.mark.skipif(
    _cuda_kernels_reason() is not None, reason=str(_cuda_kernels_reason())
)


@pytest.mark.cuda
@needs_cuda_kernels
def test_cuda_kernels_pass_on_the_geometry_grid():
    stage = Stage("kernels-cuda", "CUDA kernels", True, status=PASSED)
    kernel_check.check(stage, shapes.GEOMETRY, shapes.cuda_variants(), "cuda")
    assert stage.status == PASSED, stage.reason
    assert stage.info["cases"] == len(shapes.GEOMETRY) * len(shapes.cuda_variants())


@pytest.mark.cuda
@needs_cuda_kernels
def test_sanitizer_driver_matches_the_host_build_on_the_gpu():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "saphnet.selftest.sanitizer_driver"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert DONE in done.stdout


@pytest.mark.cuda
@needs_cuda_kernels
def test_op_speed_rows_hold_every_figure():
    from saphnet.selftest import op_speed

    shape = shapes.OpShape("small", 1, 32, 32, 24, 40, (3, 3), pads=(1, 1, 1, 1))
    rows = op_speed.measure([shape], warmup=1, repeats=2, peak=100.0)
    impls = {r["impl"] for r in rows}
    assert {"ours fused float16", "ours direct float16", "ours direct float32"} <= impls
    for row in rows:
        assert row["ms"] > 0 and row["TFLOP/s"] == pytest.approx(shape.flop / row["ms"] / 1e9)
        assert row["% FP16 peak"] == pytest.approx(row["TFLOP/s"])


@pytest.mark.skipif(not HAVE_LIBRARY, reason="plugin library not built (make plugins)")
def test_a_library_without_code_for_this_gpu_is_rebuilt_and_used(monkeypatch, tmp_path):
    real = plugins.library_path()
    built = []

    def fake_build(folder):
        built.append(folder)
        return real

    def architectures(path):
        return ({"75"}, {"75"}) if not built else ({"90"}, set())

    monkeypatch.setattr(environment, "library_architectures", architectures)
    monkeypatch.setattr(environment, "build_native", fake_build)
    monkeypatch.setenv(plugins.ENV_VAR, str(real))  # restored afterwards
    info = environment.plugin_library((9, 0), tmp_path)
    assert built == [tmp_path / "plugins-sm_90"]
    assert "none for sm_90: built for the native architecture" in info["plugin built"]
    assert info["plugin SASS"] == "90" and info["plugin SHA-256"] == sha256_file(real)
    built.clear()
    monkeypatch.setattr(environment, "library_architectures", lambda path: ({"80"}, set()))
    info = environment.plugin_library((8, 6), tmp_path)
    assert not built and "plugin built" not in info and info["plugin SASS"] == "80"
    monkeypatch.setattr(environment, "library_architectures", lambda path: None)
    assert "no cuobjdump" in environment.plugin_library((9, 0), tmp_path)["plugin architectures"]
    plugins.load_library.cache_clear()


def test_tensorrt_stage_skips_without_tensorrt():
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    from saphnet.selftest import tensorrt_stage

    with pytest.raises(StageSkipped, match="TensorRT is not installed"):
        tensorrt_stage.check(Stage("tensorrt", "t", True), None, 1, 1, quick=True)


def test_network_stage_fails_on_a_broken_or_inexact_variant(monkeypatch):
    canned = {
        "shipped": [{"group": "g", "impl": "eager fp16 plugin", "status": "passed"}],
        "paper": [{"group": "p", "impl": "graph fp16 plugin", "status": "failed: CUDA error"}],
    }
    monkeypatch.setattr(network_speed, "measure_network", lambda name, *a: canned[name])
    monkeypatch.setattr(network_speed, "paper_network", lambda: None)
    stage = Stage("network", "n", True, status=PASSED)
    network_speed.check(stage, 1, 1, quick=True)
    assert stage.status == FAILED and stage.reason.endswith("p graph fp16 plugin")
    canned["paper"][0]["status"] = "skipped: out of GPU memory"
    stage = Stage("network", "n", True, status=PASSED)
    network_speed.check(stage, 1, 1, quick=True)
    assert stage.status == PASSED and "60 dB" in stage.tolerances["parity"]


@pytest.mark.skipif(not HAVE_LIBRARY, reason="plugin library not built (make plugins)")
def test_kernel_check_records_a_refused_call_and_goes_on(monkeypatch):
    real = plugins.host_forward

    def refuse_nhwc8(*args, layout="nchw", **kwargs):
        if layout == "nhwc8":
            raise plugins.PluginError("pdfconv_forward_host failed (unsupported): layout", 2)
        return real(*args, layout=layout, **kwargs)

    monkeypatch.setattr(plugins, "host_forward", refuse_nhwc8)
    stage = Stage("kernels-host", "t", True, status=PASSED)
    kernel_check.check(stage, shapes.GEOMETRY[:1], shapes.host_variants(), "cpu")
    refused = [r for r in stage.rows if r["status"].startswith("FAILED: pdfconv")]
    assert len(refused) == 2 and all("nhwc8" in r["variant"] for r in refused)
    assert (
        stage.status == FAILED
        and stage.reason == "2 of 6 cases failed (outside tolerance, or refused)"
    )


def test_build_errors_are_one_line_with_the_reason():
    log = '-- Configuring done\nCMake Error in CMakeLists.txt:\n  CUDA_ARCHITECTURES is set to "native", but no GPU was detected.\n\n-- Generating done\nCMake Generate step failed.\n'
    assert environment.first_error(log) == (
        'CMake Error in CMakeLists.txt: CUDA_ARCHITECTURES is set to "native", but no GPU was detected.'
    )
    assert environment.first_error("a\nlast line\n") == "last line"
    assert environment.first_error("") == "no output"


def test_environment_names_the_autoregister_library_beside_a_tensorrt_build(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Triton and trtexec --staticPlugins need the self-registering companion library:
    the report says where it is, or that it is missing, when the library has TensorRT."""
    from saphnet.selftest.environment import plugin_library

    main_lib = tmp_path / plugins.LIBRARY_NAME
    main_lib.write_bytes(b"main")
    monkeypatch.setenv(plugins.ENV_VAR, str(main_lib))
    monkeypatch.setattr(plugins, "version", lambda: 10000)
    monkeypatch.setattr(plugins, "has_cuda", lambda: True)
    monkeypatch.setattr(plugins, "has_tensorrt", lambda: True)
    missing = plugin_library(None, tmp_path)["plugin autoregister library"]
    assert missing.startswith("none (") and plugins.AUTOREGISTER_LIBRARY_NAME in missing
    companion = tmp_path / plugins.AUTOREGISTER_LIBRARY_NAME
    companion.write_bytes(b"companion")
    assert plugin_library(None, tmp_path)["plugin autoregister library"] == str(companion)
    monkeypatch.setattr(plugins, "has_tensorrt", lambda: False)
    assert "plugin autoregister library" not in plugin_library(None, tmp_path)
