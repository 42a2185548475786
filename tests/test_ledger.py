"""The ledger's running counts agree with a recount of every index."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.ledger import Outcome, SessionLedger

events = st.lists(
    st.one_of(
        st.tuples(st.just("known"), st.integers(0, 80)),
        st.tuples(
            st.just("settle"),
            st.integers(0, 80),
            st.sampled_from([o for o in Outcome if o != Outcome.PENDING]),
            st.sampled_from([None, "gap", "corrupt"]),
        ),
    ),
    max_size=60,
)


def recount(ledger: SessionLedger) -> Counter[str]:
    counts: Counter[str] = Counter()
    for i, o in enumerate(ledger.outcomes):
        if i >= ledger.start:
            name = Outcome(o).name
            counts[f"{name}({ledger.reasons[i]})" if i in ledger.reasons else name] += 1
    return counts


@given(st.integers(0, 20), events)
def test_running_counts_match_a_recount(start: int, steps: list[tuple]) -> None:
    ledger = SessionLedger(1, start=start)
    for step in steps:
        if step[0] == "known":
            ledger.known(step[1])
        else:
            ledger.settle(step[1], step[2], step[3])
    assert ledger.counts() == recount(ledger)


@given(st.integers(0, 20), events, st.integers(0, 90))
def test_settled_since_lists_what_is_settled_up_to_the_first_pending(
    start: int, steps: list[tuple], since: int
) -> None:
    ledger = SessionLedger(1, start=start)
    for step in steps:
        if step[0] == "known":
            ledger.known(step[1])
        else:
            ledger.settle(step[1], step[2], step[3])
    expected = []
    for index in range(max(since, start), ledger.end):
        if ledger.outcome(index) == Outcome.PENDING:
            break
        expected.append((index, ledger.outcome(index), ledger.reasons.get(index)))
    assert list(ledger.settled_since(since)) == expected
    assert ledger.low == next(iter(ledger.pending()), ledger.end)
    assert ledger.nbytes == ledger.end - start
