"""Atomic, no-clobber output files shared by every command that writes one."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import SaphnetError


def check_writable(path: str | os.PathLike[str], force: bool) -> Path:
    """Refuse to overwrite without ``force``; make sure the folder exists and is writable."""
    target = Path(path)
    if target.exists() and not force:
        raise SaphnetError(f"{target} exists; pass --force to overwrite it")
    if target.is_dir():
        raise SaphnetError(f"{target} is a folder; give a file path")
    parent = target.parent if str(target.parent) else Path(".")
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
