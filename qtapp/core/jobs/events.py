"""A job is a stream of typed events.

The child process writes one JSON object per line; :func:`decode` turns a line back into the
frozen dataclass it came from. Every event has a ``kind`` field naming its class.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, **asdict(self)}, separators=(",", ":"))


@dataclass(frozen=True)
class Started(Event):
    kind: ClassVar[str] = "started"
    job: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress(Event):
    """How far a job is. ``fraction`` in [0, 1]; ``detail`` carries job-specific figures."""

    kind: ClassVar[str] = "progress"
    fraction: float
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Point(Event):
    """One point of a live curve, e.g. ``series="ppl"``, x = tokens, y = running PPL."""

    kind: ClassVar[str] = "point"
    series: str
    x: float
    y: float
    err: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Log(Event):
    kind: ClassVar[str] = "log"
    text: str
    level: str = "info"


@dataclass(frozen=True)
class Finished(Event):
    kind: ClassVar[str] = "finished"
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed(Event):
    """The job ended without a result. ``hint`` says what the user can do about it."""

    kind: ClassVar[str] = "failed"
    message: str
    hint: str = ""
    partial: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cancelled(Event):
    kind: ClassVar[str] = "cancelled"
    partial: dict[str, Any] = field(default_factory=dict)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (Started, Progress, Point, Log, Finished, Failed, Cancelled)
}
TERMINAL = (Finished, Failed, Cancelled)


def decode(line: str) -> Event:
    """Turn one JSON line from a child back into its event; unknown text becomes a Log."""
    try:
        data = json.loads(line)
        cls = EVENT_TYPES[data.pop("kind")]
        return cls(**data)
    except (ValueError, KeyError, TypeError, AttributeError):
        return Log(text=line.rstrip("\n"), level="stdout")
