"""BENCHMARKS.md is written by several benches: each owns the text between its own markers."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, text: str, start: str, end: str) -> None:
    """Replace the text from ``start`` to ``end`` (markers included; ``text`` carries them) in
    ``path``, or append ``text`` when the markers are not there yet."""
    old = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        new = head + text.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    else:
        new = old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    path.write_text(new)


def publish(lines: list[str], start: str, end: str, write: bool) -> str:
    """Print a bench's section (``lines`` from its start marker to its end marker) and, with
    ``write``, put it into the project's BENCHMARKS.md."""
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        write_section(Path(__file__).resolve().parents[1] / "BENCHMARKS.md", text, start, end)
    return text
