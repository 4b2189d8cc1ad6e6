"""The `shared` fuzz target (tests/fuzz/targets.py) holds on generated programs of shared
structures: every input decodes or is refused with a DecodeError, within the target's CPU limit per
input, building only registered classes (issue 11, item 11). On the core before issue 11's fixes
a few thousand inputs found RecursionError escaping."""
import os
import random
import sys

import pytest

# the fuzz modules import each other by name, as the harness runs them (tests/fuzz/harness.py)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz"))

import registry_support  # noqa: E402
import shared_support  # noqa: E402
import targets  # noqa: E402


@pytest.fixture(autouse=True)
def _rss_cap_from_here():
    """The target's RSS check reads the process's high-water mark, which earlier tests in this
    pytest process may have raised past the cap: only a new peak counts here."""
    import resource

    targets._rss_peak_checked = max(targets._rss_peak_checked,
                                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)


def test_the_target_is_available():
    assert "shared" in targets.available()


@pytest.mark.parametrize("seed", range(4))
def test_generated_programs(seed):
    rng = random.Random(seed)
    target = targets.TARGETS["shared"]
    for _ in range(500):
        target(bytes(rng.randrange(256) for _ in range(rng.randrange(48))))


def test_the_issue_chain_is_refused_within_the_limit():
    _, chain = shared_support.seeds()
    decoder = registry_support.make_registry_decoder()
    assert targets.outcome(lambda: decoder.decode(chain), chain)[:2] == ("error", "DecodeError")
