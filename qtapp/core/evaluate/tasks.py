"""Task files and task selection exactly as llama.cpp's ``llama-perplexity`` reads them.

HellaSwag's text layout is six lines per task: ``activity label: context``, the index (0-3) of
the right ending, then the four endings. ``llama-perplexity`` does not score the first N tasks:
it draws N of them at random with ``std::mt19937 rng(1)`` and
``std::uniform_int_distribution<size_t>(0, remaining - 1)``, removing each one drawn. To score
the same tasks, :func:`hellaswag_tasks` replays that: the Mersenne Twister, and libstdc++'s
``uniform_int_distribution`` for a 32-bit engine (Lemire's nearly-divisionless method, GCC 11
and later). Task files are untrusted: every problem is one clear :class:`QuantLensError`.

The two other formats of the pinned ``tools/perplexity/perplexity.cpp``:

* Winogrande (``--winogrande``, ``load_winogrande_from_csv``): CSV rows ``index,sentence,choice
  1,choice 2,answer`` where the sentence holds a ``_`` for the choice. Rows llama.cpp cannot
  parse (a header, a missing comma, no ``_``, an answer not 1 or 2) are skipped as it skips them.
* Multiple choice (``--multiple-choice``, ``multiple_choice_task::deserialize``): a binary file
  of uint32 task count, uint32 byte positions, then per task a question and two answer lists
  (mc1: one right answer, mc2: unused), strings as uint32 length + bytes, labels as int32.

Both draw a limited number of tasks with ``std::mt19937 rng(1)`` scaled through a float
(:func:`float_draw`), not with ``uniform_int_distribution`` as HellaSwag does. Their text is
kept as bytes: llama.cpp splits and joins bytes, and so the tokenizer sees the same bytes.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from qtapp.core.errors import QuantLensError

__all__ = [
    "chosen_tasks",
    "HsTask",
    "McTask",
    "Mt19937",
    "TaskKind",
    "WgTask",
    "detect_task_kind",
    "float_draw",
    "hellaswag_tasks",
    "mc_tasks",
    "read_hellaswag",
    "read_multiple_choice",
    "read_winogrande",
    "wilson",
    "winogrande_tasks",
]

MAX_TASK_FILE = 256 * 1024 * 1024
MAX_ANSWERS = 100  # multiple_choice_answers::deserialize refuses more

TaskKind = Literal["hellaswag", "winogrande", "mc"]
KIND_NAMES: dict[str, str] = {
    "hellaswag": "HellaSwag",
    "winogrande": "Winogrande",
    "mc": "Multiple choice",
}


@dataclass(frozen=True)
class WgTask:
    """One Winogrande task: ``first + choice + second`` is each choice's sentence."""

    index: int  # its place among the file's valid rows (0-based)
    first: bytes
    second: bytes
    choices: tuple[bytes, bytes]
    answer: int  # 1 or 2


@dataclass(frozen=True)
class McTask:
    """One multiple-choice task: the question and its mc1 answers with their labels (1 right)."""

    index: int  # its place in the file (0-based)
    question: bytes
    answers: tuple[bytes, ...]
    labels: tuple[int, ...]


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


def _read_task_file(p: Path, what: str) -> bytes:
    """The file's bytes, or one clear error (missing, a folder, too large, unreadable)."""
    try:
        if p.stat().st_size > MAX_TASK_FILE:
            raise QuantLensError(
                f"{p} is larger than {MAX_TASK_FILE >> 20} MiB.", f"Use a {what} task file."
            )
        return p.read_bytes()
    except FileNotFoundError:
        raise QuantLensError(f"Task file not found: {p}", "Check the path.") from None
    except IsADirectoryError:
        raise QuantLensError(f"{p} is a folder.", f"Give a {what} task file.") from None
    except OSError as exc:
        raise QuantLensError(f"Cannot read {p}: {exc}", "Check the file.") from None


def read_hellaswag(path: str | Path) -> list[HsTask]:
    """Every task of a HellaSwag text file, in file order."""
    p = Path(path)
    raw = _read_task_file(p, "HellaSwag")
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


# -- Winogrande ---------------------------------------------------------------------------------
_WG_HINT = (
    "A Winogrande file is llama.cpp's CSV: index,sentence,choice 1,choice 2,answer (1 or 2), "
    "the sentence with a _ where the choice goes."
)
# ``std::istringstream >> int``: C-locale white space, an optional sign, digits
_INT = re.compile(rb"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def _winogrande_row(line: bytes) -> tuple[bytes, bytes, bytes, bytes, int] | None:
    """``load_winogrande_from_csv`` for one line: (first, second, choice 1, choice 2, answer),
    or None where llama.cpp skips the line. The first 4 commas outside double quotes split it;
    only the sentence loses its quotes (an opening quote and the byte before the comma)."""
    commas: list[int] = []
    quote_open = False
    for i, c in enumerate(line):
        if not quote_open:
            if c == 0x2C:  # ,
                commas.append(i)
                if len(commas) == 4:
                    break
            elif c == 0x22:  # "
                quote_open = True
        elif c == 0x22:
            quote_open = False
    if len(commas) != 4:
        return None
    c0, c1, c2, c3 = commas
    quoted = line[c0 + 1] == 0x22
    sentence = line[c0 + 2 : c1 - 1] if quoted else line[c0 + 1 : c1]
    where = sentence.find(b"_")
    if where < 0:
        return None
    m = _INT.match(line[c3 + 1 :])
    if m is None:
        return None
    answer = int(m[1])
    if answer not in (1, 2):  # also what overflows an int: the stream fails
        return None
    return sentence[:where], sentence[where + 1 :], line[c1 + 1 : c2], line[c2 + 1 : c3], answer


def _winogrande_lines(raw: bytes) -> list[bytes]:
    """The lines llama.cpp's loop reads: ``-f`` drops one final newline, then ``std::getline``
    with ``if (in.fail() || in.eof()) break;`` drops the last line, which now never ends in a
    newline. So the file's last row is never scored (unless the file ends in a blank line)."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    return raw.split(b"\n")[:-1]


def read_winogrande(path: str | Path) -> list[WgTask]:
    """Every task of a Winogrande CSV file that ``llama-perplexity -f FILE --winogrande`` reads,
    in file order; the lines it skips (a header, malformed rows) are skipped."""
    p = Path(path)
    raw = _read_task_file(p, "Winogrande")
    if not raw.strip():
        raise QuantLensError(f"{p} is empty.", _WG_HINT)
    tasks: list[WgTask] = []
    for line in _winogrande_lines(raw):
        row = _winogrande_row(line)
        if row is not None:
            first, second, ch1, ch2, answer = row
            tasks.append(WgTask(len(tasks), first, second, (ch1, ch2), answer))
    if not tasks:
        raise QuantLensError(f"{p} has no Winogrande row that llama.cpp can read.", _WG_HINT)
    return tasks


# -- the float-scaled draw of Winogrande and multiple choice ------------------------------------
def float_draw(size: int, count: int) -> list[int]:
    """The indexes ``winogrande_score`` and ``multiple_choice_score`` draw: ``std::mt19937
    rng(1)``, ``j = int(scale * rng() * aux.size())`` in float (``scale`` = 2^-32), then
    ``aux[j] = aux.back(); aux.pop_back()``. The draws happen in float32 as in C++."""
    rng = Mt19937(1)
    scale = np.float32(1) / (np.float32(1) + np.float32(4294967295))
    aux = list(range(size))  # pop_back keeps the slot: a j equal to the size reads it
    n = size
    chosen = []
    for _ in range(count):
        j = int(scale * np.float32(rng()) * np.float32(n))
        # j == size only if rng() rounds to 2^32 on the first draws (p ~ 3e-8): C++ reads
        # past the vector there; the last slot stands in
        idx = aux[min(j, size - 1)]
        chosen.append(idx)
        aux[j if j < size else size - 1] = aux[n - 1]
        n -= 1
    return chosen


def winogrande_tasks(tasks: list[WgTask], limit: int = 0) -> list[WgTask]:
    """``--winogrande-tasks limit``: a random draw when 0 < limit < len(tasks), else all in
    file order."""
    if 0 < limit < len(tasks):
        return [tasks[i] for i in float_draw(len(tasks), limit)]
    return list(tasks)


# -- multiple choice ----------------------------------------------------------------------------
_MC_HINT = (
    "A multiple-choice file is llama.cpp's binary layout (uint32 task count, uint32 positions, "
    "then each task's question and answers), as in ikawrakow/validation-datasets-for-llama.cpp."
)


class _Reader:
    """Little-endian reads from bytes; reading past the end is one clear error."""

    def __init__(self, p: Path, data: bytes, pos: int) -> None:
        self.p, self.data, self.pos = p, data, pos

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise QuantLensError(
                f"{self.p} is truncated: {what} needs {n} bytes at byte {self.pos}, past the "
                f"end ({len(self.data)} bytes).",
                _MC_HINT,
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self, what: str) -> int:
        value: int = struct.unpack("<I", self.take(4, what))[0]
        return value

    def string(self, what: str) -> bytes:
        return self.take(self.u32(what + "'s length"), what)

    def answers(self, task: int, name: str) -> tuple[tuple[bytes, ...], tuple[int, ...]]:
        n = self.u32(f"task {task} {name} answer count")
        if n > MAX_ANSWERS:
            raise QuantLensError(
                f"{self.p}: task {task} has {n} {name} answers, more than {MAX_ANSWERS}.",
                "llama.cpp refuses a task with more than 100 answers. " + _MC_HINT,
            )
        answers = tuple(self.string(f"task {task} {name} answer {k + 1}") for k in range(n))
        labels = struct.unpack(f"<{n}i", self.take(4 * n, f"task {task} {name} labels"))
        return answers, tuple(labels)


def read_multiple_choice(path: str | Path) -> list[McTask]:
    """Every task of a multiple-choice binary file, in file order. Stricter than llama.cpp in
    one way: the position table must point at the tasks as they follow each other (llama.cpp
    reads them in order when scoring all of them, at the table's positions when drawing)."""
    p = Path(path)
    data = _read_task_file(p, "multiple-choice")
    if not data:
        raise QuantLensError(f"{p} is empty.", _MC_HINT)
    r = _Reader(p, data, 0)
    n_task = r.u32("the task count")
    if n_task == 0:
        raise QuantLensError(f"{p} holds no tasks (its task count is 0).", _MC_HINT)
    if 4 + 4 * n_task > len(data):
        raise QuantLensError(
            f"{p} gives {n_task} tasks: their position table alone runs past the end of the "
            f"file ({len(data)} bytes).",
            _MC_HINT,
        )
    positions = struct.unpack(f"<{n_task}I", r.take(4 * n_task, "the position table"))
    tasks = []
    for i in range(n_task):
        if positions[i] != r.pos:
            raise QuantLensError(
                f"{p}: the position table puts task {i + 1} at byte {positions[i]}, but it "
                f"starts at byte {r.pos}.",
                _MC_HINT,
            )
        question = r.string(f"task {i + 1} question")
        answers, labels = r.answers(i + 1, "mc1")
        r.answers(i + 1, "mc2")  # read past; llama.cpp does not score mc2
        if not question or not answers or not all(answers):
            raise QuantLensError(
                f"{p}: task {i + 1} has an empty question or answer.",
                "llama.cpp stops on such a task (found bad task / found empty answer).",
            )
        bad = [v for v in labels if v not in (0, 1)]
        if bad:
            raise QuantLensError(
                f"{p}: task {i + 1} labels an answer {bad[0]}.",
                "Labels are 1 for the right answer, 0 for the others.",
            )
        tasks.append(McTask(i, question, answers, labels))
    return tasks


def mc_tasks(tasks: list[McTask], limit: int = 0) -> list[McTask]:
    """``--multiple-choice-tasks limit``: 0 or at least len(tasks) scores all in file order,
    else a random draw."""
    if limit == 0 or limit >= len(tasks):
        return list(tasks)
    return [tasks[i] for i in float_draw(len(tasks), limit)]


# -- which format -------------------------------------------------------------------------------
_HEAD = 1 << 20  # text formats are told from the first MiB


def _looks_like_mc(f: Any, size: int) -> bool:
    """A plausible task count (each task takes at least 17 bytes) whose position table starts
    right after itself, rises and stays inside the file."""
    f.seek(0)
    head = f.read(4)
    if size < 8 or len(head) < 4:
        return False
    n = struct.unpack("<I", head)[0]
    if n == 0 or 4 + 4 * n > size or n > size // 17:
        return False
    table = f.read(4 * n)
    if len(table) < 4 * n:
        return False
    pos = struct.unpack(f"<{n}I", table)
    rising = all(a < b for a, b in zip(pos, pos[1:], strict=False))
    return pos[0] == 4 + 4 * n and rising and pos[-1] < size


def detect_task_kind(path: str | Path) -> TaskKind:
    """The task file's format from its content: ``"mc"`` (the binary layout), ``"hellaswag"``
    (six lines per task, the second a digit 0-3) or ``"winogrande"`` (CSV rows with a ``_``).
    Reads the position table of a binary file, else the first MiB."""
    p = Path(path)
    hint = (
        "Give a HellaSwag text file (six lines per task), a Winogrande CSV or a "
        "multiple-choice binary file as llama.cpp's llama-perplexity reads them, or name the "
        "format (--kind in the CLI)."
    )
    try:
        size = p.stat().st_size
        with p.open("rb") as f:
            if _looks_like_mc(f, size):
                return "mc"
            f.seek(0)
            head = f.read(_HEAD)
    except FileNotFoundError:
        raise QuantLensError(f"Task file not found: {p}", "Check the path.") from None
    except IsADirectoryError:
        raise QuantLensError(f"{p} is a folder.", "Give a task file.") from None
    except OSError as exc:
        raise QuantLensError(f"Cannot read {p}: {exc}", "Check the file.") from None
    if not head.strip():
        raise QuantLensError(f"{p} is empty.", hint)
    lines = head.split(b"\n")
    if len(lines) >= 6 and all(
        lines[k].strip() in (b"0", b"1", b"2", b"3") for k in range(1, min(len(lines), 60), 6)
    ):
        return "hellaswag"
    if any(_winogrande_row(line) is not None for line in lines[:50]):
        return "winogrande"
    raise QuantLensError(f"Cannot tell the task format of {p}.", hint)


def chosen_tasks(
    path: str | Path, kind: str, limit: int
) -> list[HsTask] | list[WgTask] | list[McTask]:
    """The tasks llama-perplexity scores from ``path`` of format ``kind`` with ``limit``: read
    (one clear QuantLensError for a bad file), then drawn as that format draws them."""
    if kind == "winogrande":
        return winogrande_tasks(read_winogrande(path), limit)
    if kind == "mc":
        return mc_tasks(read_multiple_choice(path), limit)
    if kind == "hellaswag":
        return hellaswag_tasks(read_hellaswag(path), limit)
    raise QuantLensError(f"Unknown task kind {kind!r}.", "Use hellaswag, winogrande or mc.")
