"""A column view of a snapshot's strike rows, built once per snapshot and shared by rules.

Per-strike rules scan 200 rows per snapshot; in Python the cost is in touching 200 objects,
not in the arithmetic. Transposing the rows once (C-level: `astuple` + `zip`) gives tuples of
floats that C-level operations can compare whole (`==`) or scan (`map`/`compress`), and the
view of a snapshot is reused when it comes back as the next snapshot's `prev`.

The memo is small and keyed by object identity (holding the snapshot, so an id is never
reused while cached); it is invisible to callers: same input, same output.
"""

from __future__ import annotations

from itertools import compress
from operator import ne
from typing import NamedTuple

import msgspec

from gex_alertd.codec import Columns
from gex_alertd.model import STRIKE_FIELDS, FlowGex

_astuple = msgspec.structs.astuple
_MEMO_SIZE = 64  # as commit.PREV_CACHE_MAX: a view is reused when its snapshot returns as prev
_memo: dict[int, tuple[FlowGex, StrikeColumns]] = {}


class StrikeColumns(NamedTuple):
    strike: tuple[float, ...]
    call_oi: tuple[float | None, ...]
    put_oi: tuple[float | None, ...]
    call_oi_change: tuple[float | None, ...]
    put_oi_change: tuple[float | None, ...]


FIELDS: tuple[str, ...] = StrikeColumns._fields  # the strike columns the rules read
_PICK = tuple(STRIKE_FIELDS.index(f) for f in FIELDS)
_EMPTY = StrikeColumns((), (), (), (), ())


def columns(snap: FlowGex) -> StrikeColumns:
    hit = _memo.get(id(snap))
    if hit is not None and hit[0] is snap:
        return hit[1]
    if snap.strikes:
        cols = tuple(zip(*map(_astuple, snap.strikes), strict=True))
        view = StrikeColumns(*(cols[i] for i in _PICK))
    else:
        view = _EMPTY
    if len(_memo) >= _MEMO_SIZE:
        del _memo[next(iter(_memo))]
    _memo[id(snap)] = (snap, view)
    return view


def from_block(block: Columns) -> StrikeColumns:
    """The view straight from a decoded strike block (`codec.decode_columns(blob, FIELDS)`):
    the same tuples `columns()` builds from the rows, without building rows."""
    if not block.count:
        return _EMPTY
    return StrikeColumns(*(tuple(block.cols[f]) for f in FIELDS))


def attach(snap: FlowGex, view: StrikeColumns) -> None:
    """Make `view` the column view of `snap` (whose rows were not decoded, `strikes == []`).
    The memo is bounded: attach right before the evaluation that reads it, with no await in
    between, so no other snapshot can push it out."""
    if len(_memo) >= _MEMO_SIZE and id(snap) not in _memo:
        del _memo[next(iter(_memo))]
    _memo[id(snap)] = (snap, view)


def changed(a: tuple[object, ...], b: tuple[object, ...]) -> list[int]:
    """Indexes where two equally long columns differ (a C-level scan)."""
    if a == b:
        return []
    return list(compress(range(len(a)), map(ne, a, b)))
