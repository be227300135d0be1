"""The Pareto frontier of quantizations: nothing else is both smaller and better."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def pareto_front(points: Iterable[tuple[float, float, K]]) -> list[K]:
    """Keys of the points on the frontier minimising both size and loss, by increasing size.

    A point is on the frontier when no other point is at most as large and at most as lossy
    while being strictly better in one of the two. Of identical points only the first is kept.
    Points with a missing (None or NaN) coordinate are ignored.
    """
    clean = [
        (float(size), float(loss), i, key)
        for i, (size, loss, key) in enumerate(points)
        if size is not None and loss is not None and not (math.isnan(size) or math.isnan(loss))
    ]
    clean.sort(key=lambda p: (p[0], p[1], p[2]))
    front: list[K] = []
    best = math.inf
    for _size, loss, _i, key in clean:
        if loss < best:
            front.append(key)
            best = loss
    return front
