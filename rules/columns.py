"""A column view of a snapshot's strike rows, built once per snapshot and shared by rules.

Per-strike rules scan 200 rows per snapshot; in Python the cost is in touching 200 objects,
not in the arithmetic. The view holds each column the rules read as one float64 array (NaN
where the served value is null), so scans are numpy operations and Python floats are made
only for the few strikes that matter. `float(arr[i])` is exactly the served float: the array
holds the same IEEE double. Non-finite values never reach the rules (`model.validate` refuses
them before a snapshot is stored or evaluated), so NaN means null and nothing else.

A view comes from the strike matrix the decoder built (`columns(snap)` on the live path: rows
of `model.strike_matrix`, no pass over the rows), from the rows (a snapshot made any other
way), or straight from the stored block without building rows (`from_block` + `attach`,
replay). It is kept on the snapshot itself (a `FlowGex` has a `__dict__` for this), so it
lives exactly as long as its snapshot: built once, reused when the snapshot comes back as the
next one's `prev`, never evicted by other snapshots. Invisible to callers: same input, same
output.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
import numpy as np

from gex_alertd.model import STRIKE_FIELDS, FlowGex, rows_matrix, strike_matrix

_VIEW = "_strike_columns"  # key in a snapshot's __dict__

# the strike columns the rules read, in the order of the rows of `StrikeColumns.m`
FIELDS: tuple[str, ...] = (
    "strike",
    "call_oi",
    "put_oi",
    "call_oi_change",
    "put_oi_change",
    "call_gex",
    "put_gex",
)
_PICK = np.array([STRIKE_FIELDS.index(f) for f in FIELDS], dtype=np.intp)


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

    @property
    def gex(self) -> np.ndarray:
        """(2, n): call then put, signs as served."""
        return self.m[5:7]


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


def _build(snap: FlowGex) -> StrikeColumns:
    m = strike_matrix(snap)
    if m is None:
        if not snap.strikes:
            return _EMPTY
        m = rows_matrix(snap.strikes)  # None -> nan
    return StrikeColumns(m.take(_PICK, axis=0))  # a copy, FIELDS rows only


def columns(snap: FlowGex) -> StrikeColumns:
    view: StrikeColumns | None = snap.__dict__.get(_VIEW)
    if view is None:
        view = snap.__dict__[_VIEW] = _build(snap)
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
    """Make `view` the column view of `snap` (whose rows were not decoded, `strikes == []`)."""
    snap.__dict__[_VIEW] = view


def detached(snap: FlowGex) -> FlowGex:
    """`snap` without its rows (`strikes == []`, every other field the same), carrying its
    column view: all that a rule reading strike data only through `columns()` needs of a
    previous snapshot, in ~8 KB for 200 strikes instead of ~100 KB of rows and matrix. For a
    cache of previous snapshots (`registry.COLUMN_ONLY_TYPES` says which rule types qualify)."""
    bare = msgspec.structs.replace(snap, strikes=[])
    attach(bare, columns(snap))
    return bare
