"""Copy the measured tables from ``benchmarks/results/*.md`` into README.md.

The README's measured tables are written by the benchmarks, not by hand, so a fresh
run and the README cannot disagree: each table sits between two markers,

    <!-- results: NAME (benchmarks/readme_tables.py writes this; do not edit) -->
    ...
    <!-- end of results: NAME -->

and this script replaces what is between them with the part of the results file
that :data:`BLOCKS` names. Run it after a benchmark writes new results;
``--check`` only says whether the README is current (exit 1 when not; a test runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"

BLOCKS = {
    "serving": ("serving.md", None),
    "deblur-memory": ("deblur_memory.md", "## `saphnet deblur`, whole command"),
}
"""Marker name -> (results file, the section heading to take, None: all after the title)."""

_BLOCK = re.compile(
    r"(<!-- results: (?P<name>[\w-]+) \(.*?\) -->\n)(?P<body>.*?)(<!-- end of results: (?P=name) -->)",
    re.S,
)


def section(markdown: str, heading: str | None) -> str:
    """The lines under ``heading`` up to the next heading of its level or above (None:
    everything after the first line, the file's title), blank lines trimmed."""
    lines = markdown.splitlines()
    if heading is None:
        body = lines[1:]
    else:
        if heading not in lines:
            raise SystemExit(f"{heading!r} is not a heading of the results file")
        start = lines.index(heading) + 1
        level = heading.split(" ", 1)[0]
        ends = [
            i
            for i in range(start, len(lines))
            if lines[i].startswith("#") and len(lines[i].split(" ", 1)[0]) <= len(level)
        ]
        body = lines[start : ends[0] if ends else len(lines)]
    return "\n".join(body).strip("\n") + "\n"


def render(readme: str, results: Path = RESULTS) -> str:
    """``readme`` with every marked block replaced by its results."""
    names = set()

    def fill(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise SystemExit(f"README marks an unknown results block {name!r}")
        names.add(name)
        file, heading = BLOCKS[name]
        body = section((results / file).read_text(), heading)
        return f"{match[1]}\n{body}\n{match[4]}"

    out = _BLOCK.sub(fill, readme)
    missing = set(BLOCKS) - names
    if missing:
        raise SystemExit(f"README has no markers for {', '.join(sorted(missing))}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md is not current")
    args = parser.parse_args(argv)
    text = README.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print("README.md's measured tables differ from benchmarks/results/; run "
                  "python benchmarks/readme_tables.py", file=sys.stderr)  # fmt: skip
            return 1
        return 0
    if new != text:
        from saphnet.files import atomic_output

        with atomic_output(README, force=True) as tmp:
            tmp.write_text(new)
        print("README.md updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
