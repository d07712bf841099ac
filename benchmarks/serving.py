"""What does serving on Triton cost or gain against a plain ``saphnet deblur`` loop?

One run, one machine, side by side: the same real images through
(a) the loop ``saphnet deblur`` runs (``runtime.deblur`` image after image, no files),
(b) ``saphnet serve`` with dynamic batching off (``--max-batch 1``) and on (``4``),
each with one and two model instances, loaded by ``saphnet loadtest``'s client at
each concurrency. Reported as images/s, latency percentiles and ratios to the loop,
batching on/off and two/one instances. Every server's first answer is checked
byte for byte against the loop's. Writes serving.json, serving.md, serving.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from saphnet.commands._args import parse_size
from saphnet.commands.loadtest import concurrency_list
from saphnet.errors import SaphnetError
from saphnet.files import atomic_output
from saphnet.plots import grouped_bars
from saphnet.runtime.api import cached_onnx, deblur, open_backend
from saphnet.runtime.bench import _json_safe, header, percentiles
from saphnet.serve.loadtest import load_images, run_loadtest
from saphnet.serve.process import ServerProcess, serve_command, start

log = logging.getLogger("serving")

SERVERS = {
    "batching off, 1 instance": ["--max-batch", "1"],
    "batching on, 1 instance": ["--max-batch", "4"],
    "batching off, 2 instances": ["--max-batch", "1", "--instances", "2"],
    "batching on, 2 instances": ["--max-batch", "4", "--instances", "2"],
}


def deblur_loop(model: Path, size: tuple[int, int], requests: int) -> dict[str, float]:
    """Images per second and latency of ``runtime.deblur`` one image after another."""
    images = load_images(size)
    backend = open_backend("onnxruntime", model)
    try:
        deblur(backend, images[0])  # warm-up, as the servers' first checked request
        times = []
        began = time.perf_counter()
        for i in range(requests):
            start_s = time.perf_counter()
            deblur(backend, images[i % len(images)])
            times.append((time.perf_counter() - start_s) * 1000)
        seconds = time.perf_counter() - began
    finally:
        backend.close()
    return {**percentiles(times, (50, 95, 99)), "throughput": requests / seconds}


def start_with_retry(command: list[str], stem: Path, attempts: int = 3) -> ServerProcess:
    """Start a server; again when it fails to load (a start can time out on a busy
    2-core machine)."""
    for attempt in range(1, attempts):
        try:
            return start(command, stem.with_suffix(f".{attempt}.log"))
        except SaphnetError as exc:
            log.warning("server start %d failed (%s); trying again", attempt, str(exc)[-200:])
    return start(command, stem.with_suffix(f".{attempts}.log"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, help="ONNX file (default: the shipped weights, exported)")
    p.add_argument("--size", type=parse_size, default=(128, 128), help="HxW (default: 128x128)")
    p.add_argument("--requests", type=int, default=48, help="requests per level (default: 48)")
    p.add_argument("--concurrency", type=concurrency_list, default=[1, 4, 8], help="default: 1,4,8")
    p.add_argument("--duration", type=float, default=60.0, help="s per level (default: 60)")
    p.add_argument("-o", "--output", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--force", action="store_true", help="overwrite earlier results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    model = args.model or cached_onnx(None)
    load = os.getloadavg()[0]  # a shared machine's other work, stated beside the figures
    loop = deblur_loop(model, args.size, args.requests)
    log.info("deblur loop: %.2f images/s", loop["throughput"])
    backend = open_backend("onnxruntime", model)
    results: dict[str, object] = {"deblur loop": loop}
    try:
        with tempfile.TemporaryDirectory() as work:
            for name, flags in SERVERS.items():
                server = start_with_retry(
                    [*serve_command("--model", str(model)), *flags], Path(work) / f"{len(results)}"
                )
                try:
                    report = run_loadtest(
                        f"http://{server.http_url}",
                        args.concurrency,
                        args.requests,
                        args.duration,
                        args.size,
                        lambda image: deblur(backend, image),
                    )
                finally:
                    server.stop()
                if not report.check.get("identical"):
                    raise SystemExit(
                        f"{name}: first answer differs from the loop's: {report.check}"
                    )
                results[name] = [asdict(level) for level in report.levels]
                best = max(lv.throughput for lv in report.levels)
                log.info("%s: best %.2f images/s", name, best)
    finally:
        backend.close()
    data = {
        "header": {
            **header(),
            "model": model.name,
            "size": f"{args.size[0]}x{args.size[1]}",
            "requests per level": args.requests,
            "load average at start": f"{load:.1f}",
        },
        "results": results,
        "ratios": ratios(results, args.concurrency),
    }
    args.output.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.output / "serving.json", args.force) as tmp:
        tmp.write_text(json.dumps(_json_safe(data), indent=2) + "\n")
    with atomic_output(args.output / "serving.md", args.force) as tmp:
        tmp.write_text(markdown(data, args.concurrency))
    with atomic_output(args.output / "serving.png", args.force) as tmp:
        plot(data, args.concurrency, tmp)
    print(markdown(data, args.concurrency))
    return 0


def _throughput(results: dict, name: str, concurrency: int) -> float:
    return next(lv["throughput"] for lv in results[name] if lv["concurrency"] == concurrency)


def ratios(results: dict, concurrencies: list[int]) -> dict[str, dict[int, float]]:
    """Throughput ratios at each concurrency (> 1: the first is faster)."""
    loop = results["deblur loop"]["throughput"]
    out: dict[str, dict[int, float]] = {}
    for c in concurrencies:
        t = {name: _throughput(results, name, c) for name in SERVERS}
        for name, value in t.items():
            out.setdefault(f"{name} / deblur loop", {})[c] = value / loop
        for inst in ("1 instance", "2 instances"):
            on, off = t[f"batching on, {inst}"], t[f"batching off, {inst}"]
            out.setdefault(f"batching on / off, {inst}", {})[c] = on / off
        for batching in ("on", "off"):
            two, one = t[f"batching {batching}, 2 instances"], t[f"batching {batching}, 1 instance"]
            out.setdefault(f"2 / 1 instances, batching {batching}", {})[c] = two / one
    return out


def markdown(data: dict, concurrencies: list[int]) -> str:
    h = data["header"]
    loop = data["results"]["deblur loop"]
    lines = [
        f"# Serving on Triton vs a saphnet deblur loop ({h['size']}, {h['model']})",
        "",
        f"{h['cpu']}; onnxruntime {h['onnxruntime']}; {h['date']}; "
        f"{h['requests per level']} requests per level; load average {h['load average at start']} "
        "at the start (other jobs on the machine). Images/s (p50 / p99 ms).",
        "",
        "| setup | " + " | ".join(f"concurrency {c}" for c in concurrencies) + " |",
        "|---|" + "---|" * len(concurrencies),
        f"| deblur loop (sequential) | {loop['throughput']:.1f} ({loop['p50_ms']:.0f} / "
        f"{loop['p99_ms']:.0f})" + " | -" * (len(concurrencies) - 1) + " |",
    ]
    for name in SERVERS:
        cells = []
        for c in concurrencies:
            lv = next(lv for lv in data["results"][name] if lv["concurrency"] == c)
            err = f", {lv['errors']} errors" if lv["errors"] else ""
            cells.append(f"{lv['throughput']:.1f} ({lv['p50_ms']:.0f} / {lv['p99_ms']:.0f}{err})")
        lines.append(f"| serve, {name} | " + " | ".join(cells) + " |")
    lines += ["", "| ratio of throughputs | " + " | ".join(f"c={c}" for c in concurrencies) + " |"]
    lines.append("|---|" + "---|" * len(concurrencies))
    for name, values in data["ratios"].items():
        lines.append(f"| {name} | " + " | ".join(f"{values[c]:.2f}" for c in concurrencies) + " |")
    return "\n".join(lines) + "\n"


def plot(data: dict, concurrencies: list[int], path: Path) -> None:
    """Images/s per setup and concurrency, the loop as a line and each bar's ratio to it;
    linear axes from zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8))
    series = {
        f"serve, {name}": [_throughput(data["results"], name, c) for c in concurrencies]
        for name in SERVERS
    }
    loop = data["results"]["deblur loop"]["throughput"]
    grouped_bars(ax, [str(c) for c in concurrencies], series, "images / s", loop, "deblur loop")
    ax.set_xlabel("concurrent requests")
    ax.legend(fontsize=7, loc="upper left", ncol=3)
    ax.set_title(
        f"saphnet serve on Triton, {data['header']['size']} ({data['header']['cpu']})", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
