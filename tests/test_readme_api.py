"""The README's Python API example runs verbatim (issue 15, item 9)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

README = Path(__file__).resolve().parent.parent / "README.md"


def python_api_example() -> str:
    """The first ```python block under the README's "## Python API" heading."""
    text = README.read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Python API section has no ```python block"
    return match.group(1)


@pytest.mark.slow
def test_readme_python_api_example_runs_verbatim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from saphnet.data.sample import SAMPLE_BLUR

    shutil.copy(SAMPLE_BLUR, tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # its export stays here
    exec(compile(python_api_example(), str(README), "exec"), {"__name__": "readme"})
    out = np.asarray(Image.open(tmp_path / "photo-deblurred.png"))
    blurred = np.asarray(Image.open(tmp_path / "photo.png").convert("RGB"))
    assert out.shape == blurred.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - blurred).mean() > 0.1  # the network changed it
    assert "tile 1/1" in capsys.readouterr().out
