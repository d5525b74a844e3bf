"""Tracks with divisions from positions: global optimisation over the candidate graph (see solver.py).

`link_tracks` takes a Tracking of positions, with the network probabilities where it has them
(`division_probability` on positions, `link_probability` on its candidate links), and returns a new
Tracking with the chosen links, each with its `marginal_probability` (marginals.py; the mothers with their
`division_marginal_probability`), and the links and divisions to review (review.py); every writer of
octrack.tracking works on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from octrack.candidates import DEFAULT_FACTOR, DEFAULT_MAX_PARTNERS
from octrack.linking.costs import (DIVISION_PROBABILITY, LINK_PROBABILITY, REPLACE, CostSettings, Costs,
                                   MotionModel, compute_costs, initial_motion, refined_motion)
from octrack.linking.graph import CandidateGraph, build_graph
from octrack.linking.marginals import DEFAULT_TEMPERATURE, Marginals, marginals
from octrack.linking.review import DIVISION, LINK, ReviewItem, review_items
from octrack.linking.solver import CROWDED_CLUSTER, CROWDED_DENSITY, Solution, solve
from octrack.tracking.model import TENTATIVE, Position, Tracking

MARGINAL_PROBABILITY = "marginal_probability"  # OrganoidTracker's name, on links
DIVISION_MARGINAL_PROBABILITY = "division_marginal_probability"  # on mothers
REVIEW_BELOW = 0.99  # OrganoidTracker's default threshold
MOTION_ROUNDS = 3  # network-free: solve, re-estimate the motion scales from the tracks, solve again


@dataclass(frozen=True)
class SolvedProblem:
    """The candidate graph, its costs and the chosen solution: what the marginals at any temperature need."""

    graph: CandidateGraph
    costs: Costs
    solution: Solution

    def chosen_links(self) -> list[tuple[Position, Position]]:
        positions = self.graph.positions
        return [(positions[self.graph.link_source[link]], positions[self.graph.link_target[link]])
                for link in np.flatnonzero(self.solution.links)]

    def chosen_link_probabilities(self, temperature: float) -> np.ndarray:
        """The marginal probability of each chosen link (in the order of `chosen_links`) at `temperature`."""
        return marginals(self.graph, self.costs, self.solution, temperature).link[self.solution.links]


@dataclass(frozen=True)
class LinkingResult:
    tracking: Tracking
    problem: SolvedProblem
    review: list[ReviewItem]  # links and divisions with a marginal probability below `review_below`
    review_below: float
    temperature: float
    left_out: int  # positions in no track
    candidate_links: int
    costs_from: str  # what the costs came from
    motion: MotionModel | None  # the network-free scales, where used
    crowded_clusters: int = 0  # clusters too crowded for divisions (see solver.CROWDED_CLUSTER)

    @property
    def uncertain_links(self) -> int:
        return sum(item.kind == LINK for item in self.review)

    @property
    def uncertain_divisions(self) -> int:
        return sum(item.kind == DIVISION for item in self.review)

    def describe(self) -> str:
        tracking = self.tracking
        gaps = sum(1 for a, b in tracking.links() if b.t - a.t > 1)
        return (f"{len(tracking)} positions, {tracking.link_count()} links ({gaps} over a missed time point), "
                f"{len(tracking.divisions())} divisions "
                f"from {self.candidate_links} candidate links ({self.costs_from}); {self.left_out} positions left "
                f"out; {self.describe_review()}{self.describe_crowded()}")

    def describe_crowded(self) -> str:
        if not self.crowded_clusters:
            return ""
        return (f"; {self.crowded_clusters} cluster(s) of positions too crowded for divisions (over "
                f"{CROWDED_CLUSTER} candidate links and divisions between two time points, over "
                f"{CROWDED_DENSITY:g} per way in or out) linked without divisions")

    def describe_review(self) -> str:
        """How many links and divisions need review, and what share of the lineage that is."""
        links, divisions = self.tracking.link_count(), len(self.tracking.divisions())
        return (f"to review (marginal probability below {self.review_below:g} at temperature "
                f"{self.temperature:g}): {self.uncertain_links} of {links} links "
                f"({_share(self.uncertain_links, links)}) and {self.uncertain_divisions} of {divisions} divisions "
                f"({_share(self.uncertain_divisions, divisions)})")


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


def link_tracks(tracking: Tracking, *, settings: CostSettings | None = None,
                image_shape_zyx: tuple[int, int, int] | None = None,
                candidate_factor: float = DEFAULT_FACTOR, candidate_max_partners: int = DEFAULT_MAX_PARTNERS,
                temperature: float = DEFAULT_TEMPERATURE, review_below: float = REVIEW_BELOW,
                report: Callable[[str], None] | None = None) -> LinkingResult:
    """The most likely tracks through the positions of `tracking`.

    Link costs come from the `link_probability` of the tracking's links where they carry one (those links
    are then the candidates), else from displacement; division costs from `division_probability` of the
    positions where they carry one, else from geometry. Positions marked `detection_tentative` (weak peaks) are
    taken only where their links pay for them (`CostSettings.tentative_leave_out`). `image_shape_zyx` (pixels)
    makes appearing and disappearing cheaper near the image border; without it only the first and last time points
    are.
    `temperature` scales the costs of the marginal probabilities (see marginals.py); links and divisions below
    `review_below` are listed for review."""
    settings = settings or CostSettings()
    link_probabilities = has_link_probabilities(tracking)
    graph = build_graph(tracking, use_tracking_links=link_probabilities, factor=candidate_factor,
                        max_partners=candidate_max_partners, gap_links=settings.gap is not None)
    link_probability = np.array([  # a link without a probability among links with one: no information, 0.5
        _link_probability(tracking, graph.positions[a], graph.positions[b])
        for a, b in zip(graph.link_source, graph.link_target)]) if link_probabilities else None
    division_probability = _division_probabilities(tracking, graph)
    tentative = np.array([tracking.is_tentative(p) for p in graph.positions], dtype=bool)
    box = _image_box_um(tracking, image_shape_zyx)
    motion = initial_motion(graph)
    rounds = 1 if link_probabilities and division_probability is not None and settings.network_evidence == REPLACE \
        else MOTION_ROUNDS  # the displacement's scale matters only where its costs do
    for _ in range(rounds):
        costs = compute_costs(graph, settings, motion, link_probability=link_probability,
                              division_probability=division_probability, image_box_um=box, tentative=tentative)
        solution = solve(graph, costs)
        motion = refined_motion(graph, solution.links, solution.divisions, motion)
    probabilities = marginals(graph, costs, solution, temperature)
    linked = np.zeros(len(graph.positions), dtype=bool)
    linked[graph.link_source[solution.links]] = linked[graph.link_target[solution.links]] = True
    result = LinkingResult(_tracking_of(tracking, graph, solution, linked, probabilities),
                           SolvedProblem(graph, costs, solution),
                           review_items(graph, probabilities, solution, review_below), review_below, temperature,
                           int((~linked).sum()), graph.link_count,
                           _costs_from(link_probabilities, division_probability is not None),
                           None if rounds == 1 else motion, solution.crowded_clusters)
    if report:
        report(result.describe())
    return result


def has_link_probabilities(tracking: Tracking) -> bool:
    return any(LINK_PROBABILITY in tracking.link_data(a, b) for a, b in tracking.links())


def _link_probability(tracking: Tracking, a: Position, b: Position) -> float:
    """A link's network probability; 0.5 (no information) where it has none, NaN for a gap link (the network
    scores none)."""
    if b.t - a.t > 1:
        return float("nan")
    return tracking.link_data(a, b).get(LINK_PROBABILITY, 0.5) if tracking.has_link(a, b) else 0.5


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
                 probabilities: Marginals) -> Tracking:
    """The linked positions, with their metadata, and the chosen links with theirs and their marginal probability,
    the mothers with the marginal probability of their division (and the file data of the input)."""
    result = tracking.empty_copy()
    for position, used in zip(graph.positions, linked):
        if used:  # a tentative detection taken is a detection
            result.add_position(position, **{key: value for key, value in tracking.position_data(position).items()
                                              if key != TENTATIVE})
    for division in np.flatnonzero(solution.divisions):
        result.set_position_data(graph.positions[graph.division_mother[division]], DIVISION_MARGINAL_PROBABILITY,
                                 _rounded(probabilities.division[division]))
    for link in np.flatnonzero(solution.links):
        a, b = graph.positions[graph.link_source[link]], graph.positions[graph.link_target[link]]
        data = dict(tracking.link_data(a, b)) if tracking.has_link(a, b) else {}
        result.add_link(a, b, **data, **{MARGINAL_PROBABILITY: _rounded(probabilities.link[link])})
    return result


def _rounded(probability: float) -> float:
    """Six decimals, but never rounded up to 1 (a probability of 0.9999996 is not certainty)."""
    return min(round(float(probability), 6), 0.999999) if probability < 1 else 1.0
