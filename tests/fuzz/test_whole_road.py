"""Issue 12: mutated packets through the real gateway and the real intake (tests/fuzz/road.py's oracle).

One `axis serve --workers 1` (its gateway child, signer process and intake worker) per configuration;
for each family of tests/fuzz/mutations.py, a fixed number of hypothesis examples, derandomized and with
no example database, so CI runs the same packets every time and a failure shrinks to the smallest
mutant that shows it. The long, randomized campaign is bench/bench_fuzz.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import CONFIGURATIONS, _make
from tests.e2e.packets import TestPKI
from tests.fuzz.mutations import FAMILIES, HypothesisDraw
from tests.fuzz.road import Road, install_crl, materials

# per family and configuration: 200 packets, about 8 CPU-s with the deployment
# (the long campaign is bench/bench_fuzz.py)
EXAMPLES = 50


def campaign(road: Road, family: str) -> None:
    @settings(derandomize=True, database=None, max_examples=EXAMPLES, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def example(data: st.DataObject) -> None:
        _, _, problems = road.try_one(HypothesisDraw(data), family)
        assert not problems, "\n".join(problems)

    example()


@pytest.mark.slow(seconds=25)  # here: 14 s embedded, 25 s on RabbitMQ + PostgreSQL
@pytest.mark.parametrize("kind", CONFIGURATIONS)
def test_mutated_packets_are_refused_with_a_code_and_nothing_unsigned_is_delivered(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path, e2e_pki: TestPKI) -> None:
    made = materials(e2e_pki)
    for deployment in _make(kind, request, tmp_path, e2e_pki):
        install_crl(deployment, made)
        deployment.serve()
        road = Road(deployment, e2e_pki, made)
        try:
            road.setup()
            for family in FAMILIES:
                campaign(road, family)
            assert not (found := road.final_problems()), "\n".join(found)
            # Every family was tried, and each met at least one refusal: the mutations reach Axis's checks.
            assert all(road.tally.tried[family] >= EXAMPLES for family in FAMILIES), road.tally.tried
            for family in FAMILIES:
                assert any(what.startswith("AX") for (f, what) in road.tally.answers if f == family), road.tally
                # Not one mutation drawn over and over (here: 14 to 27 distinct ones per family).
                assert sum(label.startswith(family + "/") for label in road.tally.mutations) >= 10, road.tally
        finally:
            road.close()
