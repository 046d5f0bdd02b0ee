from hypothesis import given
from hypothesis import strategies as st

from bulkretry._dedup import SeenIds


@given(st.lists(st.text(min_size=1, max_size=40), max_size=300))
def test_behaves_like_a_set(ids):
    """add() is True exactly for the first occurrence of each ID, through many resizes."""
    seen, reference = SeenIds(), set()
    for run_id in ids:
        assert seen.add(run_id) == (run_id not in reference)
        reference.add(run_id)
    assert len(seen) == len(reference)


def test_grows_past_its_initial_capacity():
    """Thousands of IDs are all remembered after the table grows several times."""
    seen = SeenIds()
    ids = [f"run-{n}" for n in range(10_000)]
    assert all(seen.add(run_id) for run_id in ids)
    assert not any(seen.add(run_id) for run_id in ids)
