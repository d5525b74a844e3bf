"""The candidate graph that the tracker chooses from, as arrays: positions, links and divisions.

Positions are numbered 0..n-1 in time order. A candidate link joins a position at t to one at t+1 (by the
rule of `octrack.candidates`, or the links of the tracking where those carry network probabilities). A gap link
joins a position at t to one at t+2 (by the same rule, between those time points), so that a track may pass a
time point where its detection is missing. Candidates and costs see the positions less the drift of the whole
picture (`drift`: the shift between consecutive time points that best superimposes their positions), so that a
sample moving as a whole, or a stage drifting, does not look like every cell moving. A candidate division is a
mother with two of its candidate links (not gap links), to two different daughters.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from octrack.candidates import DEFAULT_FACTOR, DEFAULT_MAX_PARTNERS, candidate_pairs, frame_shift
from octrack.tracking.model import Position, Tracking, coordinates_um


@dataclass(frozen=True)
class CandidateGraph:
    positions: list[Position]
    xyz_um: np.ndarray  # (n, 3) in µm (pixels where the voxel size is unknown)
    stable_um: np.ndarray  # (n, 3) the same less the drift since the first time point
    time: np.ndarray  # (n,) time point of each position
    link_source: np.ndarray  # (m,) position index at t
    link_target: np.ndarray  # (m,) position index at t+1, or t+2 for a gap link
    division_links: np.ndarray  # (k, 2) the two candidate links (indices into the links) of each division

    @property
    def division_mother(self) -> np.ndarray:
        return self.link_source[self.division_links[:, 0]]

    @property
    def link_count(self) -> int:
        return len(self.link_source)

    @property
    def gap_links(self) -> np.ndarray:
        """(m,) bool: the links that skip a time point."""
        return self.time[self.link_target] - self.time[self.link_source] > 1

    def link_vectors(self) -> np.ndarray:
        """(m, 3) displacement of every candidate link in µm, less the drift."""
        return self.stable_um[self.link_target] - self.stable_um[self.link_source]


def build_graph(tracking: Tracking, *, use_tracking_links: bool, factor: float = DEFAULT_FACTOR,
                max_partners: int = DEFAULT_MAX_PARTNERS, max_division_partners: int = DEFAULT_MAX_PARTNERS,
                gap_links: bool = False) -> CandidateGraph:
    """The candidate graph of a tracking: its own links between consecutive time points when
    `use_tracking_links` (the candidates that a link network scored), else the candidate rule's pairs; with
    `gap_links`, also the rule's pairs between t and t+2.

    Divisions pair the `max_division_partners` nearest candidate daughters of each mother."""
    positions = list(tracking.positions())
    index = {position: i for i, position in enumerate(positions)}
    xyz = coordinates_um(positions, tracking.voxel_size)
    time = np.array([p.t for p in positions], dtype=np.int64)
    stable = xyz - drift(xyz, time)
    if use_tracking_links:
        pairs = [(index[a], index[b]) for a, b in tracking.links() if b.t == a.t + 1]
    else:
        pairs = _rule_pairs(tracking, index, stable, factor, max_partners, step=1)
    if gap_links:
        pairs += _rule_pairs(tracking, index, stable, factor, max_partners, step=2)
    links = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    source, target = links[:, 0], links[:, 1]
    distances = np.linalg.norm(stable[target] - stable[source], axis=1)
    distances[time[target] - time[source] > 1] = np.inf  # no daughter across a gap
    return CandidateGraph(positions, xyz, stable, time, source, target,
                          _division_pairs(source, distances, max_division_partners))


def drift(xyz: np.ndarray, time: np.ndarray, rounds: int = 10) -> np.ndarray:
    """(n, 3) per position the drift of the whole picture since the first time point: the sum of the shifts
    between consecutive time points (`octrack.candidates.frame_shift`), each found from no shift and again from
    the shifts of the neighbouring time points (drift is smooth over time)."""
    time_points = np.unique(time)
    frames = {t: xyz[time == t] for t in time_points}
    shifts = {t: frame_shift(frames[t], frames[t + 1], rounds=rounds) for t in time_points if t + 1 in frames}
    for t in shifts:  # a second chance from the neighbours' shifts: drift is smooth over time
        starts = [shifts[u][0] for u in (t - 1, t + 1) if u in shifts] + [shifts[t][0]]
        shifts[t] = frame_shift(frames[t], frames[t + 1], starts, rounds)
    total, cumulative = np.zeros(3), {}
    for t in time_points:
        cumulative[t] = total.copy()
        total = total + (shifts[t][0] if t in shifts else 0)
    return np.array([cumulative[t] for t in time]).reshape(-1, 3)


def _rule_pairs(tracking: Tracking, index: dict[Position, int], xyz: np.ndarray, factor: float,
                max_partners: int, step: int) -> list[tuple[int, int]]:
    """The candidate rule's pairs from each time point t to t + `step`."""
    pairs = []
    for time_point in tracking.time_points():
        sources = [index[p] for p in tracking.positions_at(time_point)]
        targets = [index[p] for p in tracking.positions_at(time_point + step)]
        pairs += [(sources[a], targets[b])
                  for a, b in candidate_pairs(xyz[sources], xyz[targets], factor, max_partners)]
    return pairs


def _division_pairs(source: np.ndarray, distances: np.ndarray, max_partners: int) -> np.ndarray:
    """(k, 2) pairs of links from the same mother, among its `max_partners` shortest links (of finite length)."""
    order = np.lexsort((distances, source))  # links grouped by source, shortest first
    order = order[np.isfinite(distances[order])]
    grouped = source[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    pairs = [np.stack([order[starts[sizes > second] + first], order[starts[sizes > second] + second]], axis=1)
             for first, second in itertools.combinations(range(max_partners), 2)]
    return np.concatenate(pairs).reshape(-1, 2) if pairs else np.zeros((0, 2), dtype=np.int64)
