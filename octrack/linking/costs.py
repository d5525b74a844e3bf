"""What each choice of the tracker costs, in nats (natural-log units): the negative log odds of a link, a
division, an appearance and a disappearance (leaving a detection out costs both of the last two).

With network probabilities (`link_probability` on links, `division_probability` on positions, the names of
OrganoidTracker), a link costs −ln(p / (1 − p)) and a division adds −ln odds of its mother's division
probability to its two links. Without them, the costs come from displacement alone: a link of length d
costs −ln of a heavy-tailed (Student t) density of d relative to d = 0, about d² / 2σ² for short links, with
σ the per-axis scale of a cell's movement between time points, estimated from the data (the nearest
candidate of each position first, then the links chosen); a division costs a prior plus the same cost of the
distance of the mother from its daughters' midpoint (on a slightly wider scale): daughters move apart in
opposite directions, so their midpoint moves about like a cell that does not divide.
The defaults were chosen on the C. elegans lineage of scripts/benchmark_tracking.py, true and perturbed.

A gap link (t → t+2, a track passing a missed detection) costs the displacement cost on the scale of two time
points (σ√2) plus `gap`, the log odds against a detection being missed; it is dearer than two links through a
position that is there, and cheaper than a track ending and another starting (a false division and an
appearance, without it).

Appearing and disappearing are expensive inside the image, cheaper near its border (cells move in and out)
and free at the first and last time points (every track starts and ends there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from octrack.linking.graph import CandidateGraph

LINK_PROBABILITY, DIVISION_PROBABILITY = "link_probability", "division_probability"
REPLACE, ADD = "replace", "add"
_MEDIAN_DISTANCE_PER_SIGMA = 1.5382  # median of the length of a 3D standard normal vector
_SMALLEST_PROBABILITY = 1e-6


@dataclass(frozen=True)
class CostSettings:
    """The priors of the tracker, in nats."""

    appear: float = 7.0  # a track starting inside the image, after the first time point
    disappear: float = 7.0  # a track ending inside the image, before the last time point
    at_border: float = 2.0  # appearing or disappearing right at the image border
    border_um: float = 5.0  # width of the border zone, where the costs rise from `at_border` to the full cost
    division: float = 6.0  # the prior of a division, where no network gives its probability
    tail: float = 3.0  # degrees of freedom of the displacement distribution: lower, heavier tails
    division_scale: float = 1.25  # σ of the daughters' midpoint over σ: daughters do not move apart exactly evenly
    gap: float | None = 4.0  # a link skipping one time point (a missed detection), on top of its displacement;
    # None: no gap links
    leave_out: float | None = 7.0  # leaving a detection out of every track (a false detection), where cheaper
    # than its appearing and disappearing; None: those only
    tentative_leave_out: float = 0.0  # leaving out a tentative detection (a peak below the detection threshold,
    # decoded so that a track may take it where its links pay for it: a newborn daughter's weak peak)
    network_evidence: str = REPLACE  # how network probabilities enter: REPLACE the displacement and geometry
    # costs by their negative log odds, or ADD their evidence (log odds less those of the base rate) to them
    division_weight: float = 2.0  # the division network's evidence counts this many times: twice was ahead of
    # once in six of seven comparisons of docs/benchmarks.md (issue 13: breast cancer, detected and true positions,
    # four division models; synthetic true positions), by 1 to 4 divisions; a cell left over beside a track
    # then starts a track of its own instead of becoming a false daughter, unless the network sees the division


@dataclass(frozen=True)
class Costs:
    link: np.ndarray  # (m,) per candidate link
    division: np.ndarray  # (k,) per candidate division: all of it, its two links included
    appear: np.ndarray  # (n,) per position
    disappear: np.ndarray  # (n,)
    leave_out: np.ndarray | None = None  # (n,) leaving a position out of every track, where not appear + disappear


@dataclass(frozen=True)
class MotionModel:
    """The scale of the network-free costs in µm (pixels where the voxel size is unknown)."""

    sigma: float  # per-axis standard deviation of the displacement of a cell between time points


def log_odds(probability: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probability, dtype=np.float64), _SMALLEST_PROBABILITY, 1 - _SMALLEST_PROBABILITY)
    return np.log(p) - np.log1p(-p)


def initial_motion(graph: CandidateGraph) -> MotionModel:
    """From the nearest candidate partner of every position: most positions are linked to it."""
    distances = np.linalg.norm(graph.link_vectors(), axis=1)
    distances[graph.gap_links] = np.inf
    nearest = np.full(len(graph.positions), np.inf)
    np.minimum.at(nearest, graph.link_source, distances)
    return MotionModel(_sigma_from_distances(nearest[np.isfinite(nearest)]))


def refined_motion(graph: CandidateGraph, chosen_links: np.ndarray, chosen_divisions: np.ndarray,
                   previous: MotionModel) -> MotionModel:
    """From the links of a solution that belong to no division."""
    divided = np.zeros(graph.link_count, dtype=bool)
    divided[graph.division_links[chosen_divisions].ravel()] = True
    plain = chosen_links & ~divided & ~graph.gap_links
    if not plain.any():
        return previous
    return MotionModel(_sigma_from_distances(np.linalg.norm(graph.link_vectors()[plain], axis=1)))


def _sigma_from_distances(distances: np.ndarray) -> float:
    """Robust: from the median distance, as if displacements were normal with the same σ on each axis."""
    if len(distances) == 0:
        return 1.0
    return max(float(np.median(distances)) / _MEDIAN_DISTANCE_PER_SIGMA, 1e-3)


def _midpoint_offsets(graph: CandidateGraph) -> np.ndarray:
    """(k,) distance of each candidate division's mother from the midpoint of its daughters."""
    daughters = graph.link_target[graph.division_links]
    midpoint = graph.stable_um[daughters].mean(axis=1)
    return np.linalg.norm(midpoint - graph.stable_um[graph.division_mother], axis=1)


def compute_costs(graph: CandidateGraph, settings: CostSettings, motion: MotionModel, *,
                  link_probability: np.ndarray | None, division_probability: np.ndarray | None,
                  image_box_um: tuple[np.ndarray, np.ndarray] | None, tentative: np.ndarray | None = None) -> Costs:
    """Costs of every choice. Probabilities (per link, per position) replace the displacement costs (a gap link
    has none); `image_box_um` (lowest and highest corner) gives the border, None: no border discount;
    `tentative` (per position) marks the detections that cost `tentative_leave_out` to leave out."""
    distances = np.linalg.norm(graph.link_vectors(), axis=1)
    gaps = graph.gap_links
    link = _displacement_cost(distances, motion.sigma, settings.tail)
    link[gaps] = _displacement_cost(distances[gaps], np.sqrt(2) * motion.sigma, settings.tail) + (settings.gap or 0)
    geometry = settings.division + _displacement_cost(_midpoint_offsets(graph), settings.division_scale * motion.sigma,
                                                      settings.tail)
    if settings.network_evidence == ADD:
        link_evidence = np.zeros(len(link))
        if link_probability is not None:
            link_evidence[~gaps] = _evidence(link_probability[~gaps], link_probability[~gaps])
        division = geometry + link_evidence[graph.division_links].sum(axis=1)
        if division_probability is not None:
            division += settings.division_weight * _evidence(division_probability[graph.division_mother],
                                                             division_probability)
        return _with_starts_and_ends(graph, settings, image_box_um, tentative, link + link_evidence, division)
    if link_probability is not None:
        link[~gaps] = -log_odds(link_probability[~gaps])
    if division_probability is not None:
        division = -settings.division_weight * log_odds(division_probability[graph.division_mother]) \
            + link[graph.division_links].sum(axis=1)
    elif link_probability is not None:
        division = settings.division + link[graph.division_links].sum(axis=1)
    else:
        division = geometry
    return _with_starts_and_ends(graph, settings, image_box_um, tentative, link, division)


def _evidence(probabilities: np.ndarray, all_probabilities: np.ndarray) -> np.ndarray:
    """A network's evidence as a cost: minus its log odds, less those of its mean over `all_probabilities` (what
    it says of a candidate it knows nothing about), so that only what it adds to the base rate counts."""
    return -(log_odds(probabilities) - log_odds(np.mean(all_probabilities))) if len(all_probabilities) else \
        np.zeros(len(probabilities))


def _with_starts_and_ends(graph: CandidateGraph, settings: CostSettings,
                          image_box_um: tuple[np.ndarray, np.ndarray] | None, tentative: np.ndarray | None,
                          link: np.ndarray, division: np.ndarray) -> Costs:
    appear, disappear = _start_and_end_costs(graph, settings, image_box_um)
    return Costs(link, division, appear, disappear, _leave_out_costs(graph, settings, tentative))


def _leave_out_costs(graph: CandidateGraph, settings: CostSettings, tentative: np.ndarray | None
                     ) -> np.ndarray | None:
    if tentative is None or not tentative.any():
        return None if settings.leave_out is None else np.full(len(graph.positions), settings.leave_out)
    leave_out = np.full(len(graph.positions), np.inf if settings.leave_out is None else settings.leave_out)
    leave_out[tentative] = settings.tentative_leave_out
    return leave_out


def _displacement_cost(distances: np.ndarray, sigma: float, tail: float) -> np.ndarray:
    """−ln of a 3D Student t density of the displacement, relative to no displacement: like d² / 2σ² for
    small d, but growing only logarithmically, as cells now and then move far (and positions are off)."""
    return (tail + 3) / 2 * np.log1p(distances ** 2 / (tail * sigma ** 2))


def _start_and_end_costs(graph: CandidateGraph, settings: CostSettings,
                         image_box_um: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    appear = np.full(len(graph.positions), settings.appear)
    disappear = np.full(len(graph.positions), settings.disappear)
    if image_box_um is not None:
        low, high = image_box_um
        spans = high - low > 0  # a 2D image has no border in z
        to_border = np.minimum(graph.xyz_um - low, high - graph.xyz_um)[:, spans].min(axis=1, initial=np.inf)
        nearness = np.clip(to_border / max(settings.border_um, 1e-9), 0, 1)
        appear = settings.at_border + (appear - settings.at_border) * nearness
        disappear = settings.at_border + (disappear - settings.at_border) * nearness
    if len(graph.time):
        appear[graph.time == graph.time.min()] = 0
        disappear[graph.time == graph.time.max()] = 0
    return appear, disappear
