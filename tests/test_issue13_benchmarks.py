"""The figures of issue 13's benchmark scripts (scripts/benchmark_pipeline.py, scripts/benchmark_walk_calibration.py):
what they count, on tiny inputs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from octrack.linking import MARGINAL_PROBABILITY
from octrack.scoring import Counts, ErrorCalibration, ReviewPoint
from octrack.tracking import Position, Tracking

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"octrack_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_pipeline_reports_division_counts_and_the_review_point_at_0_99() -> None:
    pipeline = _script("benchmark_pipeline")
    assert pipeline._counts(Counts(true_positives=20, false_positives=3, false_negatives=10)) == \
        {"true": 30, "predicted": 23, "tp": 20, "fp": 3, "fn": 10}
    assert pipeline._f1(None) is None
    curve = [ReviewPoint(0.9, 0.05, 0.5, 0.02), ReviewPoint(0.99, 0.1, 0.8, 0.005)]
    assert pipeline._review_at(ErrorCalibration(100, 10, [], curve), 0.99) == \
        {"flagged": 0.1, "caught": 0.8, "wrong_unflagged": 0.005}


def test_the_walk_scoring_tells_a_swap_of_identities_from_a_right_link() -> None:
    walk = _script("benchmark_walk_calibration")
    rows = np.array([[0, 1, 1, 1], [0, 9, 9, 9], [1, 1.5, 1, 1], [1, 9, 9.5, 9]])  # t, z, y, x: two nuclei
    nucleus = walk.identities(rows)
    assert sorted(nucleus.values()) == [0, 0, 1, 1]
    tracking = Tracking()
    a0, b0, a1, b1 = (Position(x, y, z, int(t)) for t, z, y, x in rows)
    for position in (a0, b0, a1, b1):
        tracking.add_position(position)
    tracking.add_link(a0, a1, **{MARGINAL_PROBABILITY: 0.999})
    tracking.add_link(b0, b1, **{MARGINAL_PROBABILITY: 0.6})
    right, wrong = walk.labelled(tracking, nucleus)
    assert (right, wrong) == ([(a0, a1), (b0, b1)], [])
    swapped = Tracking()
    for position in (a0, b0, a1, b1):
        swapped.add_position(position)
    swapped.add_link(a0, b1)
    right, wrong = walk.labelled(swapped, nucleus)
    assert (right, wrong) == ([], [(a0, b1)])


def test_exact_and_propagated_marginals_of_a_small_walk_are_probabilities() -> None:
    walk = _script("benchmark_walk_calibration")
    from octrack.linking import link_tracks

    positions, nucleus = walk.walk_tracking(8 * 2, 2, seed=0)
    assert len(positions) == 16 and len(nucleus) == 16
    problem = link_tracks(positions).problem
    exact = walk._marginals_with_states(problem, walk.EXACT_STATES, 1.5)
    assert exact is not None
    propagated = walk._marginals_with_states(problem, 0, 1.5, allow_propagation=True)
    assert walk._marginals_with_states(problem, 0, 1.5) is None, "forced propagation is told apart"
    for values in (exact, propagated):
        assert values.shape == (problem.solution.links.sum(),)
        assert np.all((values >= 0) & (values <= 1))
    assert walk.MARGINALS.MAX_STATES == 1024, "the bound on the exact sum's states is put back"


def test_scoring_a_walk_counts_the_wrong_link_and_prints_the_reliability_table(tmp_path: Path, capsys) -> None:
    walk = _script("benchmark_walk_calibration")
    (tmp_path / "walk.csv").write_text("node_id,t,z,y,x,parent_id\n1,0,1,1,1,-1\n2,0,9,9,9,-1\n"
                                       "3,1,1,1,1.5,-1\n4,1,9,9,9.5,-1\n")
    (tmp_path / "tracks.csv").write_text("node_id,t,z,y,x,parent_id,marginal_probability\n1,0,1,1,1,-1,\n"
                                         "2,0,9,9,9,-1,\n3,1,1,1,1.5,1,0.999\n4,1,9,9,9.5,1,0.4\n")
    walk.score(tmp_path / "walk.csv", tmp_path / "tracks.csv")
    printed = capsys.readouterr().out
    assert "2 links, 1 wrong (0.5000)" in printed
    assert "error probability" in printed
