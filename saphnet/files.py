"""Atomic, no-clobber output files shared by every command that writes one."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import SaphnetError

log = logging.getLogger(__name__)


def check_writable(path: str | os.PathLike[str], force: bool, create: bool = True) -> Path:
    """Refuse to overwrite without ``force``; make sure the folder exists and is writable.

    ``create=False`` only checks that the folder could be made (its nearest existing
    ancestor is a writable folder), for a check made before work that may still fail:
    a run that writes nothing leaves no empty folder behind."""
    target = Path(path)
    if target.exists() and not force:
        raise SaphnetError(f"{target} exists; pass --force to overwrite it")
    if target.is_dir():
        raise SaphnetError(f"{target} is a folder; give a file path")
    parent = target.parent if str(target.parent) else Path(".")
    if not create:
        existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            raise SaphnetError(f"cannot create folder {parent} in {existing}; choose another path")
        return target
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SaphnetError(
            f"cannot create folder {parent}: {exc.strerror}; choose another path"
        ) from None
    if not os.access(parent, os.W_OK):
        raise SaphnetError(f"cannot write to folder {parent}; choose a writable path")
    return target


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    A crash or an exception leaves the old file (or nothing) in place, never half a
    file: the rename is atomic on one filesystem.
    """
    target = check_writable(path, force)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); outputs get the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in chunks (engines and ONNX files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_report_files(
    folder: Path,
    stem: str,
    json_text: str,
    markdown: str,
    plot: Callable[[Path], None],
    force: bool,
) -> list[Path]:
    """``stem``.json, .md and .png in ``folder``, each written atomically; the plot is
    skipped with a warning where matplotlib is missing (a serving or base install
    has none), so the figures themselves are never lost."""
    written = []
    for name, text in ((f"{stem}.json", json_text), (f"{stem}.md", markdown)):
        with atomic_output(folder / name, force=force) as tmp:
            tmp.write_text(text)
        written.append(folder / name)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.warning("no %s.png: the plot needs matplotlib (pip install 'saphnet[plot]')", stem)
        return written
    with atomic_output(folder / f"{stem}.png", force=force) as tmp:
        plot(tmp)
    written.append(folder / f"{stem}.png")
    return written
