"""``saphnet loadtest``: throughput and latency of a running Triton server, per concurrency.

Every level is bounded twice, by a request count and by a time limit, and every
request by a network timeout, so a slow or dead server ends the run instead of
hanging it. The images are real photos (the bundled sample, cropped at several
places, or resized when the size asked is larger), and before any timing the first
response is compared with the local result of the same model (``--model``), so a
load test of a wrong server fails instead of reporting its speed.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from ..errors import SaphnetError
from ..files import write_report_files
from ..runtime.bench import percentiles
from . import INPUT_NAME, MODEL_NAME, OUTPUT_NAME

log = logging.getLogger(__name__)

SAMPLE = Path(__file__).resolve().parent.parent / "assets" / "sample_blur.png"
NETWORK_TIMEOUT_S = 120.0
"""Longest one request may take before it counts as an error."""


@dataclass
class Level:
    """What one concurrency level measured."""

    concurrency: int
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    throughput: float = math.nan
    """Successful images per second over the level's wall time."""
    p50_ms: float = math.nan
    p95_ms: float = math.nan
    p99_ms: float = math.nan
    mean_ms: float = math.nan
    first_error: str | None = None


@dataclass
class LoadtestReport:
    header: dict[str, str]
    check: dict[str, object] = field(default_factory=dict)
    """The first response against the local result."""
    levels: list[Level] = field(default_factory=list)


def parse_url(url: str) -> tuple[str, str]:
    """``http://host:port``, ``grpc://host:port`` or ``host:port`` (HTTP) -> (protocol, host:port)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "grpc") or not parts.hostname or parts.port is None:
        raise SaphnetError(
            f"URL {url!r} is not http://HOST:PORT or grpc://HOST:PORT, e.g. http://127.0.0.1:8000"
        )
    return parts.scheme, f"{parts.hostname}:{parts.port}"


def load_images(size: tuple[int, int], count: int = 4) -> list[np.ndarray]:
    """``count`` real H x W RGB images: crops of the bundled photo at different places,
    or the photo resized when it is smaller than ``size``."""
    from PIL import Image

    photo = Image.open(SAMPLE).convert("RGB")
    h, w = size
    if h > photo.height or w > photo.width:
        return [np.asarray(photo.resize((w, h), Image.Resampling.BICUBIC))] * count
    pixels = np.asarray(photo)
    ys = np.linspace(0, photo.height - h, count).round().astype(int)
    xs = np.linspace(0, photo.width - w, count).round().astype(int)[::-1]
    return [np.ascontiguousarray(pixels[y : y + h, x : x + w]) for y, x in zip(ys, xs, strict=True)]


class Client:
    """One connection to the server (HTTP or gRPC through tritonclient), one thread."""

    def __init__(self, protocol: str, address: str, timeout_s: float = NETWORK_TIMEOUT_S) -> None:
        try:
            if protocol == "grpc":
                import tritonclient.grpc as tc
            else:
                import tritonclient.http as tc
        except ImportError:
            raise SaphnetError(
                "the load test needs tritonclient: pip install 'saphnet[serve]'"
            ) from None
        self._tc = tc
        self.protocol = protocol
        self.timeout_s = timeout_s
        if protocol == "grpc":
            self._client = tc.InferenceServerClient(address)
        else:
            self._client = tc.InferenceServerClient(
                address, connection_timeout=timeout_s, network_timeout=timeout_s
            )

    def ready(self) -> bool:
        try:
            return bool(self._client.is_model_ready(MODEL_NAME))
        except Exception:  # a refused connection, an unknown model: not ready
            return False

    def infer(self, image: np.ndarray) -> np.ndarray:
        """Deblur one (H, W, 3) uint8 image on the server."""
        batch = image[None]
        tensor = self._tc.InferInput(INPUT_NAME, list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch)
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        result = self._client.infer(MODEL_NAME, [tensor], **kwargs)
        return result.as_numpy(OUTPUT_NAME)[0]

    def close(self) -> None:
        self._client.close()


def check_first_response(
    client: Client, image: np.ndarray, local: Callable[[np.ndarray], np.ndarray] | None
) -> dict[str, object]:
    """Send ``image`` once and compare the answer with ``local(image)``."""
    served = client.infer(image)
    check: dict[str, object] = {"shape": list(served.shape), "dtype": str(served.dtype)}
    if served.shape != image.shape or served.dtype != np.uint8:
        raise SaphnetError(
            f"the server answered {served.dtype} {list(served.shape)} for a uint8 "
            f"{list(image.shape)} image; is it saphnet serve?"
        )
    if local is None:
        check["compared"] = False
        return check
    expected = local(image)
    diff = int(np.abs(served.astype(np.int16) - expected.astype(np.int16)).max())
    check.update(compared=True, max_abs_diff=diff, identical=diff == 0)
    return check


def run_level(
    protocol: str,
    address: str,
    images: Sequence[np.ndarray],
    concurrency: int,
    requests: int,
    duration_s: float,
) -> Level:
    """``concurrency`` threads, each with its own client, send until ``requests``
    were sent or ``duration_s`` passed, whichever comes first."""
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    sent = 0
    deadline = time.monotonic() + duration_s

    def worker() -> None:
        nonlocal sent
        client = Client(protocol, address)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if sent >= requests:
                        return
                    ticket = sent
                    sent += 1
                start = time.perf_counter()
                try:
                    client.infer(images[ticket % len(images)])
                except Exception as exc:  # every failure is counted, the first one reported
                    with lock:
                        errors.append(f"{type(exc).__name__}: {str(exc).strip()[:200]}")
                    continue
                with lock:
                    latencies.append((time.perf_counter() - start) * 1000)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration_s + NETWORK_TIMEOUT_S + 5)
    seconds = time.perf_counter() - began
    level = Level(concurrency, len(latencies) + len(errors), len(errors), seconds)
    level.first_error = errors[0] if errors else None
    if latencies:
        stats = percentiles(latencies, (50, 95, 99))
        level.p50_ms, level.p95_ms, level.p99_ms = (stats[f"p{q}_ms"] for q in (50, 95, 99))
        level.mean_ms = stats["mean_ms"]
        level.throughput = len(latencies) / seconds  # concurrent: not 1000 / mean
    return level


def run_loadtest(
    url: str,
    concurrencies: Sequence[int],
    requests: int,
    duration_s: float,
    size: tuple[int, int],
    local: Callable[[np.ndarray], np.ndarray] | None = None,
    wait_s: float = 30.0,
    progress: Callable[[Level], None] | None = None,
) -> LoadtestReport:
    """Check the first response, then run every concurrency level in turn."""
    from ..runtime.bench import header

    protocol, address = parse_url(url)
    images = load_images(size)
    client = Client(protocol, address)
    try:
        deadline = time.monotonic() + wait_s
        while not client.ready():
            if time.monotonic() > deadline:
                raise SaphnetError(
                    f"no ready model '{MODEL_NAME}' at {url} after {wait_s:.0f} s; "
                    "start one with saphnet serve"
                )
            time.sleep(0.5)
        check = check_first_response(client, images[0], local)
    finally:
        client.close()
    report = LoadtestReport(header(), check)
    report.header.update(
        {
            "url": url,
            "size": f"{size[0]}x{size[1]}",
            "requests per level": str(requests),
            "time limit per level": f"{duration_s:g} s",
        }
    )
    for concurrency in concurrencies:
        level = run_level(protocol, address, images, concurrency, requests, duration_s)
        report.levels.append(level)
        if progress is not None:
            progress(level)
    return report


def to_json(report: LoadtestReport) -> str:
    from ..runtime.bench import _json_safe

    return json.dumps(_json_safe(asdict(report)), indent=2, allow_nan=False)


def to_markdown(report: LoadtestReport) -> str:
    lines = [f"# saphnet loadtest: {report.header['url']}, {report.header['size']}", ""]
    lines += [f"- {k}: {v}" for k, v in report.header.items()]
    check = report.check
    if check.get("compared"):
        verdict = "identical" if check["identical"] else f"max abs diff {check['max_abs_diff']}"
        lines.append(f"- first response vs local result: {verdict}")
    else:
        lines.append("- first response: shape and dtype checked (no --model to compare with)")
    lines += [
        "",
        "| concurrency | requests | errors | images/s | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for lv in report.levels:
        lines.append(
            f"| {lv.concurrency} | {lv.requests} | {lv.errors} | {lv.throughput:.2f} | "
            f"{lv.p50_ms:.1f} | {lv.p95_ms:.1f} | {lv.p99_ms:.1f} |"
        )
    errors = [lv for lv in report.levels if lv.first_error]
    if errors:
        lines += ["", "First error per level:", ""]
        lines += [f"- {lv.concurrency}: {lv.first_error}" for lv in errors]
    return "\n".join(lines) + "\n"


def plot(report: LoadtestReport, path: Path) -> None:
    """Throughput and p50/p95/p99 latency against concurrency, linear axes from zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = [lv.concurrency for lv in report.levels]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot(c, [lv.throughput for lv in report.levels], "o-")
    left.set_xlabel("concurrent requests")
    left.set_ylabel("images / s")
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        right.plot(c, [getattr(lv, key) for lv in report.levels], "o-", label=key[:3])
    right.set_xlabel("concurrent requests")
    right.set_ylabel("latency ms")
    right.legend()
    for ax in (left, right):
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.suptitle(f"saphnet loadtest {report.header['size']} ({report.header['cpu']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def write_report(report: LoadtestReport, folder: Path, force: bool) -> list[Path]:
    """loadtest.json, loadtest.md and loadtest.png, each written atomically."""
    return write_report_files(
        folder, "loadtest", to_json(report), to_markdown(report), lambda p: plot(report, p), force
    )
