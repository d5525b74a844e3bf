"""How the networks' probabilities enter the tracker's costs: replacing the displacement costs, or added to them
as evidence beyond the network's base rate (`CostSettings.network_evidence`)."""

from __future__ import annotations

import numpy as np

from octrack.linking import link_tracks
from octrack.linking.costs import ADD, CostSettings, MotionModel, compute_costs
from octrack.linking.graph import build_graph
from octrack.tracking import Position, Tracking, VoxelSize
from octrack.tracking.model import TENTATIVE, from_positions

VOXEL = VoxelSize(1.0, 1.0, 1.0)
ADDING = CostSettings(network_evidence=ADD, division_weight=1.0)


def _division_and_bystander() -> tuple[Tracking, Position, Position]:
    """A mother at t = 3 whose daughters sit 3 px away on either side, and cells moving about 1 px a time point."""
    random = np.random.default_rng(0)
    mother = [Position(30 + t, 30, 0, t) for t in range(4)]
    first = [Position(34 + t, 33, 0, 4 + t) for t in range(3)]
    second = [Position(34 + t, 27, 0, 4 + t) for t in range(3)]
    others = [[Position(x + t + random.normal(0, 0.5), y + random.normal(0, 0.5), 0, t) for t in range(7)]
              for x, y in ((10, 10), (50, 10), (10, 50), (50, 50))]
    positions = from_positions([*mother, *first, *second, *[p for track in others for p in track]], VOXEL)
    return positions, mother[-1], first[0]


def _with_probabilities(tracking: Tracking, dividing: Position | None, division: float) -> Tracking:
    """Every candidate link at probability 0.5, and a division probability of `division` at `dividing` (0.01
    elsewhere)."""
    graph = build_graph(tracking, use_tracking_links=False)
    for position in tracking.positions():
        tracking.position_data(position)["division_probability"] = division if position == dividing else 0.01
    for a, b in zip(graph.link_source, graph.link_target):
        tracking.add_link(graph.positions[a], graph.positions[b], link_probability=0.5)
    return tracking


def test_probabilities_at_their_base_rate_add_nothing() -> None:
    tracking, _, _ = _division_and_bystander()
    graph = build_graph(tracking, use_tracking_links=False)
    plain = compute_costs(graph, CostSettings(), MotionModel(1.0), link_probability=None,
                          division_probability=None, image_box_um=None)
    same = compute_costs(graph, ADDING, MotionModel(1.0), link_probability=np.full(graph.link_count, 0.3),
                         division_probability=np.full(len(graph.positions), 0.02), image_box_um=None)
    assert np.allclose(plain.link, same.link) and np.allclose(plain.division, same.division)


def test_a_sure_link_is_cheaper_and_an_unlikely_division_dearer_than_by_geometry() -> None:
    tracking, mother, _ = _division_and_bystander()
    graph = build_graph(tracking, use_tracking_links=False)
    link_probability = np.full(graph.link_count, 0.3)
    link_probability[0] = 0.99
    division_probability = np.full(len(graph.positions), 0.02)
    division_probability[graph.positions.index(mother)] = 0.001
    plain = compute_costs(graph, CostSettings(), MotionModel(1.0), link_probability=None,
                          division_probability=None, image_box_um=None)
    added = compute_costs(graph, ADDING, MotionModel(1.0), link_probability=link_probability,
                          division_probability=division_probability, image_box_um=None)
    assert added.link[0] < plain.link[0]
    of_mother = graph.division_mother == graph.positions.index(mother)
    twice = compute_costs(graph, CostSettings(network_evidence=ADD, division_weight=2.0), MotionModel(1.0),
                          link_probability=None, division_probability=division_probability, image_box_um=None)
    assert np.all(added.division[of_mother] > plain.division[of_mother])
    assert np.all(twice.division[of_mother] > added.division[of_mother])


def test_the_division_network_confirms_or_overrules_the_geometry() -> None:
    """Geometry alone divides (daughters on either side of the mother's way); a division network sure of it keeps
    the division, one sure of the contrary, counted twice, overrules the geometry."""
    tracking, mother, _ = _division_and_bystander()
    assert link_tracks(tracking).tracking.divisions() == [mother]
    tracking, mother, _ = _division_and_bystander()
    assert link_tracks(_with_probabilities(tracking, mother, 0.9), settings=ADDING).tracking.divisions() == [mother]
    tracking, mother, _ = _division_and_bystander()
    overruled = link_tracks(_with_probabilities(tracking, mother, 0.0001),
                            settings=CostSettings(network_evidence=ADD, division_weight=2.0))
    assert overruled.tracking.divisions() == []


def _network_tracking_script():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "benchmark_network_tracking.py"
    spec = importlib.util.spec_from_file_location("octrack_network_tracking_script", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_cross_fits_on_halves_and_strips_what_a_variant_does_not_use() -> None:
    script = _network_tracking_script()
    assert script.halves([9, 10, 11]) == ([9, 10], [10, 11])
    assert script.halves(list(range(6))) == ([0, 1, 2, 3], [3, 4, 5])
    tracking, mother, _ = _division_and_bystander()
    tracking = _with_probabilities(tracking, mother, 0.9)
    kept = script.within(tracking, [3, 4])
    assert set(kept.time_points()) == {3, 4} and kept.link_count() > 0
    bare = script.without(kept, links=False, divisions=False)
    assert bare.link_count() == 0 and "division_probability" not in bare.position_data_keys()


def test_the_benchmark_leaves_out_weak_detections_with_their_links() -> None:
    script = _network_tracking_script()
    tracking = Tracking(VoxelSize(1, 1, 1))
    strong, weak = (tracking.add_position(Position(x, 0, 0, 0), detection_peak=peak)
                    for x, peak in ((0, 0.8), (20, 0.5)))
    annotated = tracking.add_position(Position(40, 0, 0, 0))  # no peak: kept
    later = tracking.add_position(Position(1, 0, 0, 1), detection_peak=0.9)
    tracking.add_link(strong, later)
    tracking.add_link(weak, later)
    kept = script.with_peak_at_least(tracking, 0.6)
    assert set(kept.positions()) == {strong, annotated, later}
    assert kept.has_link(strong, later) and kept.link_count() == 1


def test_by_default_the_division_network_counts_twice() -> None:
    """Links at 0.5 cost nothing; the second daughter appearing instead costs 7 nats. A division at p = 0.005
    costs 5.3 nats counted once (made) and 10.6 counted twice (the default: not made); at p = 0.5 it is free."""
    assert CostSettings().division_weight == 2.0
    for probability, settings, divides in ((0.005, CostSettings(division_weight=1.0), True),
                                           (0.005, CostSettings(), False), (0.5, CostSettings(), True)):
        tracking, mother, _ = _division_and_bystander()
        result = link_tracks(_with_probabilities(tracking, mother, probability), settings=settings)
        assert (result.tracking.divisions() == [mother]) == divides, (probability, settings)



def test_a_tentative_detection_is_taken_only_where_the_lineage_needs_it() -> None:
    """A weak peak (below the detection threshold) where a newborn daughter is: kept, and the division made, where
    the division network sees the division; left out where the networks see neither the division nor its links,
    where a detection above the threshold, dearer to leave out (`leave_out`), is kept."""
    def linked(division: float, daughter_links: float, tentative: bool) -> tuple[bool, bool]:
        tracking, mother, daughter = _division_and_bystander()
        tracking = _with_probabilities(tracking, mother, division)
        for a, b in tracking.links():
            if daughter in (a, b):
                tracking.link_data(a, b)["link_probability"] = daughter_links
        tracking.position_data(daughter)[TENTATIVE] = tentative
        result = link_tracks(tracking)
        return daughter in result.tracking, mother in result.tracking.divisions()

    assert linked(0.9, 0.5, tentative=True) == (True, True)
    assert linked(0.01, 0.05, tentative=True) == (False, False)
    assert linked(0.01, 0.05, tentative=False) == (True, False)
    tracking, _, daughter = _division_and_bystander()
    graph = build_graph(tracking, use_tracking_links=False)
    tentative = np.array([p == daughter for p in graph.positions])
    costs = compute_costs(graph, CostSettings(), MotionModel(1.0), link_probability=None, division_probability=None,
                          image_box_um=None, tentative=tentative)
    assert costs.leave_out[tentative] == [0.0] and np.all(costs.leave_out[~tentative] == CostSettings().leave_out)


def test_the_benchmark_tells_wrong_links_at_unannotated_detections_from_linking_mistakes() -> None:
    from octrack.linking import MARGINAL_PROBABILITY
    from octrack.scoring import score_detections, tracking_errors

    script = _network_tracking_script()
    truth = Tracking(VoxelSize(1, 1, 1))
    a0, b0 = truth.add_position(Position(50, 50, 0, 0)), truth.add_position(Position(80, 50, 0, 0))
    a1, b1 = truth.add_position(Position(52, 50, 0, 1)), truth.add_position(Position(82, 50, 0, 1))
    newcomer = truth.add_position(Position(82, 80, 0, 1))  # appears at time point 1
    truth.add_link(a0, a1)
    truth.add_link(b0, b1)
    predicted = Tracking(VoxelSize(1, 1, 1))
    same = {true: predicted.add_position(Position(true.x, true.y, 0, true.t)) for true in truth.positions()}
    edge_0, edge_1 = predicted.add_position(Position(3, 60, 0, 0)), predicted.add_position(Position(4, 60, 0, 1))
    for source, target, marginal in ((same[a0], same[a1], 1.0),  # right
                                     (same[b0], same[newcomer], 0.5),  # a linking mistake, flagged
                                     (edge_0, edge_1, 1.0)):  # a track of a nucleus without annotation
        predicted.add_link(source, target, **{MARGINAL_PROBABILITY: marginal})
    detection = score_detections(truth, predicted, max_distance_px=5)
    text = script.error_kinds(predicted, tracking_errors(truth, predicted, detection), detection, (1, 100, 100))
    assert "wrong links 2 of 3: 1 with an end at a detection that matches no annotation (1 of them within 10 px" in text
    assert "1 between annotated nuclei; of these, flagging below 0.99 catches 1 (1.00)" in text


def test_calibration_can_label_only_the_links_between_annotated_nuclei() -> None:
    from octrack.stages.calibrate import labelled_links

    truth = Tracking(VoxelSize(1, 1, 1))
    for x in (20.0, 60.0):
        track = [truth.add_position(Position(x + t, 50, 0, t)) for t in range(3)]
        for a, b in zip(track, track[1:]):
            truth.add_link(a, b)
    positions = from_positions(list(truth.positions()) + [Position(90 + t, 50, 0, t) for t in range(3)])
    result = link_tracks(positions)
    every = labelled_links(result, truth, [0, 1, 2], max_distance_px=5)
    annotated = labelled_links(result, truth, [0, 1, 2], max_distance_px=5, between_annotated=True)
    assert every.scored.sum() == 6 and every.correct.sum() == 4  # the unannotated track's 2 links count as wrong
    assert annotated.scored.sum() == 4 and annotated.correct.all()
