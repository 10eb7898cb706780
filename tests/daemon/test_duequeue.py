"""The due-time queue: the most overdue first, one entry per key, deterministic ties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gex_alertd.duequeue import DueQueue


def test_pops_only_what_is_due_most_overdue_first() -> None:
    q: DueQueue[str] = DueQueue()
    q.push("b", 5.0)
    q.push("a", 2.0)
    q.push("c", 9.0)
    assert q.pop_due(1.0) is None
    assert q.overdue(1.0) == 0.0
    assert q.overdue(6.0) == 4.0  # "a" is 4 s late
    assert q.pop_due(6.0) == "a"
    assert q.pop_due(6.0) == "b"
    assert q.pop_due(6.0) is None  # "c" is not due yet
    assert q.next_due() == 9.0 and len(q) == 1


def test_push_replaces_and_remove_drops() -> None:
    q: DueQueue[str] = DueQueue()
    q.push("a", 1.0)
    q.push("a", 7.0)  # rescheduled: the old entry must not come back
    q.push("b", 3.0)
    assert len(q) == 2 and q.due_at("a") == 7.0
    assert q.remove("b") and not q.remove("b")
    assert q.pop_due(5.0) is None
    assert q.pop_due(7.0) == "a"
    assert q.pop_due(100.0) is None and len(q) == 0 and q.next_due() is None


def test_ties_go_to_the_first_pushed() -> None:
    q: DueQueue[str] = DueQueue()
    for key in ("x", "y", "z"):
        q.push(key, 1.0)
    assert [q.pop_due(1.0) for _ in range(3)] == ["x", "y", "z"]


def test_many_replacements_do_not_grow_the_heap() -> None:
    q: DueQueue[int] = DueQueue()
    for round_ in range(50):
        for key in range(100):
            q.push(key, float(round_ * 100 + key))
    assert len(q) == 100
    assert len(q._heap) <= 2 * 100 + 64 + 1


@given(st.lists(st.tuples(st.integers(0, 20), st.floats(0, 100)), max_size=60), st.floats(0, 100))
def test_matches_a_sorted_model(ops: list[tuple[int, float]], now: float) -> None:
    q: DueQueue[int] = DueQueue()
    model: dict[int, tuple[float, int]] = {}
    for seq, (key, due) in enumerate(ops):
        q.push(key, due)
        model[key] = (due, seq)
    expected = [k for k, (due, _s) in sorted(model.items(), key=lambda kv: kv[1]) if due <= now]
    got = []
    while (k := q.pop_due(now)) is not None:
        got.append(k)
    assert got == expected
