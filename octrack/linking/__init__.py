"""Tracks with divisions from positions: global optimisation over the candidate graph (see solver.py).

`link_tracks` takes a Tracking of positions, with the network probabilities where it has them
(`division_probability` on positions, `link_probability` on its candidate links), and returns a new
Tracking with the chosen links, each with its `link_confidence`; every writer of octrack.tracking works on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from octrack.candidates import DEFAULT_FACTOR, DEFAULT_MAX_PARTNERS
from octrack.linking.confidence import link_confidence
from octrack.linking.costs import (DIVISION_PROBABILITY, LINK_PROBABILITY, CostSettings, MotionModel,
                                   compute_costs, initial_motion, refined_motion)
from octrack.linking.graph import CandidateGraph, build_graph
from octrack.linking.solver import CROWDED_GROUP, Solution, solve
from octrack.tracking.model import Tracking

LINK_CONFIDENCE = "link_confidence"
REVIEW_BELOW = 0.99
MOTION_ROUNDS = 3  # network-free: solve, re-estimate the motion scales from the tracks, solve again


@dataclass(frozen=True)
class LinkingResult:
    tracking: Tracking
    uncertain_links: int  # links with a confidence below REVIEW_BELOW
    left_out: int  # positions in no track
    candidate_links: int
    costs_from: str  # what the costs came from
    motion: MotionModel | None  # the network-free scales, where used
    crowded_groups: int = 0  # groups too crowded for divisions (see solver.CROWDED_GROUP)

    def describe(self) -> str:
        tracking = self.tracking
        text = (f"{len(tracking)} positions, {tracking.link_count()} links, {len(tracking.divisions())} divisions "
                f"from {self.candidate_links} candidate links ({self.costs_from}); {self.left_out} positions left "
                f"out; {self.uncertain_links} links with confidence below {REVIEW_BELOW}")
        if self.crowded_groups:
            text += (f"; {self.crowded_groups} group(s) of positions too crowded for divisions (over "
                     f"{CROWDED_GROUP} candidate links and divisions each) linked without divisions")
        return text


def link_tracks(tracking: Tracking, *, settings: CostSettings | None = None,
                image_shape_zyx: tuple[int, int, int] | None = None,
                candidate_factor: float = DEFAULT_FACTOR, candidate_max_partners: int = DEFAULT_MAX_PARTNERS,
                report: Callable[[str], None] | None = None) -> LinkingResult:
    """The most likely tracks through the positions of `tracking`.

    Link costs come from the `link_probability` of the tracking's links where they carry one (those links
    are then the candidates), else from displacement; division costs from `division_probability` of the
    positions where they carry one, else from geometry. `image_shape_zyx` (pixels) makes appearing and
    disappearing cheaper near the image border; without it only the first and last time points are."""
    settings = settings or CostSettings()
    link_probabilities = has_link_probabilities(tracking)
    graph = build_graph(tracking, use_tracking_links=link_probabilities, factor=candidate_factor,
                        max_partners=candidate_max_partners)
    link_probability = np.array([  # a link without a probability among links with one: no information, 0.5
        tracking.link_data(graph.positions[a], graph.positions[b]).get(LINK_PROBABILITY, 0.5)
        for a, b in zip(graph.link_source, graph.link_target)]) if link_probabilities else None
    division_probability = _division_probabilities(tracking, graph)
    box = _image_box_um(tracking, image_shape_zyx)
    motion = initial_motion(graph)
    rounds = 1 if link_probabilities and division_probability is not None else MOTION_ROUNDS
    for _ in range(rounds):
        costs = compute_costs(graph, settings, motion, link_probability=link_probability,
                              division_probability=division_probability, image_box_um=box)
        solution = solve(graph, costs)
        motion = refined_motion(graph, solution.links, solution.divisions, motion)
    confidence = link_confidence(graph, costs)
    linked = np.zeros(len(graph.positions), dtype=bool)
    linked[graph.link_source[solution.links]] = linked[graph.link_target[solution.links]] = True
    result = LinkingResult(_tracking_of(tracking, graph, solution, linked, confidence),
                           int((confidence[solution.links] < REVIEW_BELOW).sum()), int((~linked).sum()),
                           graph.link_count,
                           _costs_from(link_probabilities, division_probability is not None),
                           None if rounds == 1 else motion, solution.crowded_groups)
    if report:
        report(result.describe())
    return result


def has_link_probabilities(tracking: Tracking) -> bool:
    return any(LINK_PROBABILITY in tracking.link_data(a, b) for a, b in tracking.links())


def _division_probabilities(tracking: Tracking, graph: CandidateGraph) -> np.ndarray | None:
    """Per position, where any position carries one (those without: 0)."""
    if DIVISION_PROBABILITY not in tracking.position_data_keys():
        return None
    return np.array([float(tracking.position_data(p).get(DIVISION_PROBABILITY, 0.0)) for p in graph.positions])


def _image_box_um(tracking: Tracking, image_shape_zyx: tuple[int, int, int] | None
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    if image_shape_zyx is None:
        return None
    scale = np.array([tracking.voxel_size.x_um, tracking.voxel_size.y_um, tracking.voxel_size.z_um]) \
        if tracking.voxel_size else np.ones(3)
    size_xyz = np.array(image_shape_zyx[::-1], dtype=float) - 1
    return np.zeros(3), size_xyz * scale


def _costs_from(link_probabilities: bool, division_probabilities: bool) -> str:
    links = "link probabilities" if link_probabilities else "displacement"
    divisions = "division probabilities" if division_probabilities else \
        "a division prior" if link_probabilities else "division geometry"
    return f"costs from {links} and {divisions}"


def _tracking_of(tracking: Tracking, graph: CandidateGraph, solution: Solution, linked: np.ndarray,
                 confidence: np.ndarray) -> Tracking:
    """The linked positions, with their metadata, and the chosen links with theirs and their confidence (and the
    file data of the input)."""
    result = tracking.empty_copy()
    for position, used in zip(graph.positions, linked):
        if used:
            result.add_position(position, **tracking.position_data(position))
    for link in np.flatnonzero(solution.links):
        a, b = graph.positions[graph.link_source[link]], graph.positions[graph.link_target[link]]
        data = dict(tracking.link_data(a, b)) if tracking.has_link(a, b) else {}
        result.add_link(a, b, **data, **{LINK_CONFIDENCE: round(float(confidence[link]), 6)})
    return result
