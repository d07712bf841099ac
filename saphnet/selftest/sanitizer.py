"""compute-sanitizer's memcheck, racecheck and synccheck over both kernels.

Each tool runs :mod:`.sanitizer_driver` (our kernels alone, on a few small cases, checked
against the host build) in its own process. A tool that finds an error, or a driver whose
results differ under it, fails the stage; a tool that cannot run on this device (some
virtualised GPUs refuse it) skips with its own message.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

from .. import plugins
from .report import FAILED, PASSED, SKIPPED
from .sanitizer_driver import DONE, MISMATCH

log = logging.getLogger(__name__)

TOOLS = ("memcheck", "racecheck", "synccheck")
ERROR_EXIT = 86
TIMEOUT_S = 120


def interpret(returncode: int | None, output: str) -> tuple[str, int | None, str]:
    """(status, errors found, reason) of one tool run from its exit status and output."""
    errors = None
    summary = re.search(r"ERROR SUMMARY: (\d+) error", output)
    race = re.search(r"RACECHECK SUMMARY: \d+ hazards? displayed \((\d+) errors?", output)
    for match in (summary, race):
        if match:
            errors = max(errors or 0, int(match.group(1)))
    if returncode is None:
        return SKIPPED, errors, f"timed out after {TIMEOUT_S} s"
    if returncode == ERROR_EXIT or (errors or 0) > 0:
        return FAILED, errors, f"{errors if errors is not None else 'some'} errors reported"
    if returncode == MISMATCH:
        return FAILED, errors, "kernel results differ from the host build under the tool"
    if returncode == 0 and DONE in output:
        return PASSED, errors or 0, ""
    lines = [ln.strip("= ").strip() for ln in output.splitlines() if ln.strip("= ").strip()]
    cause = next((ln for ln in lines if "not supported" in ln.lower()), None)
    if cause is not None:
        return SKIPPED, errors, f"compute-sanitizer cannot run here: {cause}"[:300]
    return FAILED, errors, f"exit status {returncode}: {lines[-1] if lines else 'no output'}"[:300]


def run_tool(sanitizer: str, tool: str) -> dict[str, object]:
    """One tool over the driver; a report row."""
    cmd = [
        sanitizer, "--tool", tool, "--error-exitcode", str(ERROR_EXIT),
        sys.executable, "-m", "saphnet.selftest.sanitizer_driver",
    ]  # fmt: skip
    env = dict(os.environ, **{plugins.ENV_VAR: str(plugins.library_path())})
    log.info("%s", " ".join(cmd))
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False
        )
        returncode, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        returncode = None
        output = (
            (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        )
    status, errors, reason = interpret(returncode, output)
    cases = sum(1 for ln in output.splitlines() if ln.rstrip().endswith((" ok", "MISMATCH")))
    return {"tool": tool, "status": status, "errors": errors, "cases": cases, "reason": reason}


def combine(rows: list[dict[str, object]]) -> tuple[str, str]:
    """The stage's status and reason from its tools' rows."""
    failed = [r for r in rows if r["status"] == FAILED]
    if failed:
        return FAILED, "; ".join(f"{r['tool']}: {r['reason']}" for r in failed)
    if all(r["status"] == SKIPPED for r in rows):
        return SKIPPED, str(rows[0]["reason"]) if rows else "no tool ran"
    return PASSED, ""
