"""Task files and task selection exactly as llama.cpp's ``llama-perplexity --hellaswag`` reads them.

HellaSwag's text layout is six lines per task: ``activity label: context``, the index (0-3) of
the right ending, then the four endings. ``llama-perplexity`` does not score the first N tasks:
it draws N of them at random with ``std::mt19937 rng(1)`` and
``std::uniform_int_distribution<size_t>(0, remaining - 1)``, removing each one drawn. To score
the same tasks, :func:`hellaswag_tasks` replays that: the Mersenne Twister, and libstdc++'s
``uniform_int_distribution`` for a 32-bit engine (Lemire's nearly-divisionless method, GCC 11
and later). Task files are untrusted: every problem is one clear :class:`QuantLensError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from qtapp.core.errors import QuantLensError

__all__ = ["HsTask", "Mt19937", "hellaswag_tasks", "read_hellaswag", "wilson"]

MAX_TASK_FILE = 256 * 1024 * 1024


@dataclass(frozen=True)
class HsTask:
    """One HellaSwag task: its context, the index of the right ending, the four endings."""

    index: int  # its place in the file (0-based)
    context: str
    gold: int
    endings: tuple[str, str, str, str]


class Mt19937:
    """``std::mt19937``: the 32-bit Mersenne Twister, seeded like its integer constructor."""

    def __init__(self, seed: int = 5489) -> None:
        mt = [0] * 624
        mt[0] = seed & 0xFFFFFFFF
        for i in range(1, 624):
            mt[i] = (1812433253 * (mt[i - 1] ^ (mt[i - 1] >> 30)) + i) & 0xFFFFFFFF
        self.mt = mt
        self.i = 624

    def __call__(self) -> int:
        mt = self.mt
        if self.i >= 624:
            for k in range(624):
                y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7FFFFFFF)
                mt[k] = mt[(k + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
            self.i = 0
        y = mt[self.i]
        self.i += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        return y & 0xFFFFFFFF

    def below(self, n: int) -> int:
        """``std::uniform_int_distribution<size_t>(0, n - 1)(rng)`` as libstdc++ computes it
        for a 32-bit engine and ``n`` up to 2^32: Lemire's nearly-divisionless draw."""
        product = self() * n
        low = product & 0xFFFFFFFF
        if low < n:
            threshold = (-n & 0xFFFFFFFF) % n
            while low < threshold:
                product = self() * n
                low = product & 0xFFFFFFFF
        return product >> 32


def read_hellaswag(path: str | Path) -> list[HsTask]:
    """Every task of a HellaSwag text file, in file order."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_TASK_FILE:
            raise QuantLensError(
                f"{p} is larger than {MAX_TASK_FILE >> 20} MiB.", "Use a HellaSwag task file."
            )
        raw = p.read_bytes()
    except FileNotFoundError:
        raise QuantLensError(f"Task file not found: {p}", "Check the path.") from None
    except IsADirectoryError:
        raise QuantLensError(f"{p} is a folder.", "Give a HellaSwag task file.") from None
    except OSError as exc:
        raise QuantLensError(f"Cannot read {p}: {exc}", "Check the file.") from None
    text = raw.decode("utf-8", errors="replace")
    lines = text.split("\n")  # std::getline: a final newline ends the last line, no extra line
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise QuantLensError(f"{p} is empty.", "Give a HellaSwag file: six lines per task.")
    if len(lines) % 6:
        raise QuantLensError(
            f"{p} has {len(lines)} lines, not a multiple of 6.",
            "A HellaSwag file has six lines per task: context, right ending (0-3), 4 endings.",
        )
    tasks = []
    for i in range(len(lines) // 6):
        block = lines[6 * i : 6 * i + 6]
        label = block[1].strip()
        if label not in ("0", "1", "2", "3"):
            raise QuantLensError(
                f"{p}: task {i + 1} (line {6 * i + 2}) gives {label[:20]!r} as its right ending.",
                "The second line of each task must be 0, 1, 2 or 3.",
            )
        endings = (block[2], block[3], block[4], block[5])
        tasks.append(HsTask(i, block[0], int(label), endings))
    return tasks


def hellaswag_tasks(tasks: list[HsTask], limit: int = 400) -> list[HsTask]:
    """The ``limit`` tasks ``llama-perplexity --hellaswag --hellaswag-tasks limit`` scores, in
    its order (drawn at random with its seed, each drawn task removed)."""
    remaining = list(tasks)
    count = min(limit, len(tasks))
    rng = Mt19937(1)
    chosen = []
    for _ in range(count):
        chosen.append(remaining.pop(rng.below(len(remaining))))
    return chosen


def wilson(correct: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of ``correct`` of ``n``, as ``llama-perplexity`` prints it."""
    if n <= 0:
        return 0.0, 1.0
    za = 1.95996398454
    freq = correct / n
    z = za * za / n
    cnf = z * math.sqrt(n * (4.0 * freq * (1 - freq) + z)) / (za + za)
    return (freq + z * 0.5 - cnf) / (1.0 + z), (freq + z * 0.5 + cnf) / (1.0 + z)
