"""Column helpers of the window engine: double-double prefix sums, monotonic stacks of
suffix extremes, and position arrays shifted after compaction. Pure NumPy/array code."""

from __future__ import annotations

from array import array

import numpy as np


def extend_dd_prefix(hi: array[float], lo: array[float], x: np.ndarray) -> None:
    """Extend a double-double prefix sum by ``x``: the sequential sum (``np.cumsum`` adds
    in order) plus the running sum of each step's exact rounding error (TwoSum)."""
    c = np.cumsum(np.concatenate(([hi[-1]], x)))
    a, s = c[:-1], c[1:]
    bb = s - a
    err = (a - (s - bb)) + (x - bb)
    hi.frombytes(s.tobytes())
    lo.frombytes(np.cumsum(np.concatenate(([lo[-1]], err)))[1:].tobytes())


def extend_stack(
    stack: list[int], px: array[float], new: np.ndarray, i0: int, *, highs: bool
) -> None:
    """Push positions ``i0...`` (prices ``new``) on a monotonic stack of suffix extremes:
    old entries not beaten by the batch's extreme survive, then the batch's own strict
    suffix extremes follow."""
    if highs:
        extreme = float(new.max())
        while stack and px[stack[-1]] <= extreme:
            stack.pop()
        after = np.maximum.accumulate(new[::-1])[::-1]
        keep = new[:-1] > after[1:]
    else:
        extreme = float(new.min())
        while stack and px[stack[-1]] >= extreme:
            stack.pop()
        after = np.minimum.accumulate(new[::-1])[::-1]
        keep = new[:-1] < after[1:]
    stack.extend((np.flatnonzero(keep) + i0).tolist())
    stack.append(i0 + len(new) - 1)


def shifted(positions: array[int], cut: int) -> array[int]:
    """``positions[cut:]`` with ``cut`` subtracted from each (positions after compaction)."""
    out = array("q")
    out.frombytes((np.frombuffer(positions, dtype=np.int64)[cut:] - cut).tobytes())
    return out
