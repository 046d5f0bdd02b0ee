from hypothesis import given
from hypothesis import strategies as st

from bulkretry._dedup import Fingerprints, SeenIds


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


@given(st.lists(st.tuples(st.text(min_size=1, max_size=20), st.integers(-1, 2**40)), max_size=300))
def test_fingerprints_behave_like_a_dict(pairs):
    """put/get agree with a dict through many resizes; put returns the value it replaced."""
    table, reference = Fingerprints(), {}
    for key, value in pairs:
        assert table.put(key, value) == reference.get(key)
        reference[key] = value
    assert len(table) == len(reference)
    assert all(table.get(key) == value for key, value in reference.items())
    assert table.get("never-put-\u2603") is None
