"""A column view of a snapshot's strike rows, built once per snapshot and shared by rules.

Per-strike rules scan 200 rows per snapshot; in Python the cost is in touching 200 objects,
not in the arithmetic. The view holds each column the rules read as one float64 array (NaN
where the served value is null), so scans are numpy operations and Python floats are made
only for the few strikes that matter. `float(arr[i])` is exactly the served float: the array
holds the same IEEE double. Non-finite values never reach the rules (`model.validate` refuses
them before a snapshot is stored or evaluated), so NaN means null and nothing else.

A view comes from the rows (`columns(snap)`, the live path), or straight from the stored
block without building rows (`from_block` + `attach`, replay). The memo is small and keyed by
object identity (holding the snapshot, so an id is never reused while cached); a view is
reused when its snapshot comes back as the next snapshot's `prev`. It is invisible to callers:
same input, same output.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

import msgspec
import numpy as np

from gex_alertd.model import STRIKE_FIELDS, FlowGex

_astuple = msgspec.structs.astuple
_MEMO_SIZE = 64  # as commit.PREV_CACHE_MAX: a view is reused when its snapshot returns as prev
# first in, first out; an OrderedDict because a plain dict's `next(iter(d))` after many
# deletions at its front walks the dead slots (it was ~7 us per call in a long replay)
_memo: OrderedDict[int, tuple[FlowGex, StrikeColumns]] = OrderedDict()


# the strike columns the rules read, in the order of the rows of `StrikeColumns.m`
FIELDS: tuple[str, ...] = ("strike", "call_oi", "put_oi", "call_oi_change", "put_oi_change")
_PICK = [STRIKE_FIELDS.index(f) for f in FIELDS]


class StrikeColumns(NamedTuple):
    """One float64 row per column in FIELDS, one value per strike row, NaN for null. Rows of
    one matrix, so a rule scans call and put together (`oi`, `oi_change`) in one operation."""

    m: np.ndarray

    @property
    def strike(self) -> np.ndarray:
        return self.m[0, :]

    @property
    def oi(self) -> np.ndarray:
        """(2, n): call then put."""
        return self.m[1:3]

    @property
    def oi_change(self) -> np.ndarray:
        """(2, n): call then put."""
        return self.m[3:5]


class Arrays(msgspec.Struct, frozen=True):
    """Named columns of a strike block as float64 arrays, NaN where a value is null: for
    readers that scan columns in numpy and take Python floats only where they need them."""

    count: int
    cols: dict[str, np.ndarray]
    extra: dict[str, Any]
    # all of them as one (columns, count) array in the order asked for, when the block
    # decoded that way anyway (no masked, all-null or net-by-identity column among them)
    matrix: np.ndarray | None = None


_EMPTY = StrikeColumns(np.empty((len(FIELDS), 0), dtype=np.float64))


def _from_rows(snap: FlowGex) -> StrikeColumns:
    if not snap.strikes:
        return _EMPTY
    cols = tuple(zip(*map(_astuple, snap.strikes), strict=True))  # C-level transpose
    return StrikeColumns(np.array([cols[i] for i in _PICK], dtype=np.float64))  # None -> nan


def columns(snap: FlowGex) -> StrikeColumns:
    hit = _memo.get(id(snap))
    if hit is not None and hit[0] is snap:
        return hit[1]
    view = _from_rows(snap)
    if len(_memo) >= _MEMO_SIZE:
        _memo.popitem(last=False)
    _memo[id(snap)] = (snap, view)
    return view


def from_block(block: Arrays) -> StrikeColumns:
    """The view straight from a decoded strike block (`codec.decode_arrays(blob, FIELDS)`):
    the same values `columns()` builds from the rows, without building rows."""
    if not block.count:
        return _EMPTY
    if block.matrix is not None and tuple(block.cols) == FIELDS:  # rows in FIELDS order
        return StrikeColumns(block.matrix)
    return StrikeColumns(np.array([block.cols[f] for f in FIELDS], dtype=np.float64))


def attach(snap: FlowGex, view: StrikeColumns) -> None:
    """Make `view` the column view of `snap` (whose rows were not decoded, `strikes == []`).
    The memo is bounded: attach right before the evaluation that reads it, with no await in
    between, so no other snapshot can push it out."""
    if len(_memo) >= _MEMO_SIZE and id(snap) not in _memo:
        _memo.popitem(last=False)
    _memo[id(snap)] = (snap, view)
