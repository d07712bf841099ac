"""Atomic, no-clobber outputs shared by every command."""

from __future__ import annotations

import os

import pytest

from saphnet.errors import SaphnetError
from saphnet.files import atomic_output


def test_atomic_output_writes_with_umask_mode(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    old = os.umask(0o022)
    try:
        with atomic_output(target) as tmp:
            tmp.write_text("hello")
            assert not target.exists()
    finally:
        os.umask(old)
    assert target.read_text() == "hello"
    assert target.stat().st_mode & 0o777 == 0o644


def test_atomic_output_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target, force=True) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_output_refuses_to_overwrite_without_force(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(SaphnetError, match="exists; pass --force"), atomic_output(target):
        pass
    assert target.read_text() == "old"


def test_atomic_output_rejects_a_folder(tmp_path):
    with pytest.raises(SaphnetError, match="is a folder"), atomic_output(tmp_path, force=True):
        pass
