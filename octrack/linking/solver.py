"""The cheapest tracks through the candidate graph: exact, split into small independent problems.

Every position takes exactly one way in (a link from an earlier time point, being a daughter of a division,
or appearing) and exactly one way out (a link to a later time point, dividing, or disappearing); the cost of a
solution is the sum of the costs of the ways chosen. Leaving a position out of every track fills both its ways at
once, at the cost of its appearance plus its disappearance, or `Costs.leave_out` where that is cheaper (a false
detection is then left out rather than made a daughter or a short track).

The ways out and in are tied to each other only by the candidates (links, divisions, leaving out), so the
problem splits exactly into connected groups of ways. First, what can never be cheapest goes: a link dearer
than its ends disappearing and appearing, a division dearer than one of its links with the other daughter
appearing. Small groups without a division are assignment problems (`scipy.optimize.linear_sum_assignment`); the
others integer linear programs by HiGHS (`scipy.optimize.milp`: its linear relaxation first, which is nearly always
whole already, and always for a group without divisions, an assignment problem), whole groups together
in chunks of about `_LARGEST_PROGRAM` variables (HiGHS takes more than linear time in the size of a program;
leaving out ties every position's ways in and out, so with it a whole embryo is one group). So hundreds of
thousands of candidate links take seconds, and the groups are exact parts of the whole.

Two bounds keep time and memory in proportion to the number of positions (docs/reliability.md, "Load"):
- Crowded clusters. Where the links between two consecutive time points and the divisions form a connected cluster
  of over `CROWDED_CLUSTER` links and divisions, over `CROWDED_DENSITY` per way in or out of its positions
  (positions closer together than they move, where no division could be told anyway; a large field of cells
  apart is a cluster as large but not as dense), the mothers of that cluster get no divisions
  (`Solution.crowded_clusters` counts them).
  A group left without divisions is an assignment problem, of any size, whose relaxation is whole; as a program
  with divisions, one crowded pair of time points (5 000 positions each) took 49 s, its relaxation being
  fractional. (The sparse assignment solver `min_weight_full_bipartite_matching` is no choice for large ones:
  on crowded windows it ran for minutes where HiGHS's simplex took 0.5 s.)
- Groups too large for one problem. A group of over `_LARGEST_GROUP` variables (a whole embryo of hundreds of
  thousands of positions, which leaving out and gap links tie into one) is solved in windows of consecutive
  time points of about `_LARGEST_PROGRAM` variables each, in time order (as a program, or as a dense assignment
  problem where the window has no divisions and few pairs): each window chooses the ways out of its positions,
  given the ways in that earlier windows filled, looking one time point ahead (`_windows`). Not exact across the
  windows' ends: within 0.4 % of the optimal cost on the random problems of tests/test_load.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linear_sum_assignment, milp
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from octrack.linking.costs import Costs
from octrack.linking.graph import CandidateGraph

_WHOLE = 1e-6  # how far from 0 or 1 a relaxed solution may be and still count as whole
_LARGEST_ASSIGNMENT = 2000  # pairs per group solved as a dense assignment problem; larger ones as a program
_LARGEST_PROGRAM = 20_000  # variables per linear program, where the groups allow (see `_program_chunks`)
_LARGEST_GROUP = 200_000  # variables of a group solved as one program; larger ones in windows (see `_windows`)
CROWDED_CLUSTER = 20_000  # links and divisions of a connected cluster between two time points (see the docstring)
CROWDED_DENSITY = 5.0  # and per way in or out of its positions (a random walk at 8 µm spacing: 3.1-3.5; crowded: 7)


@dataclass(frozen=True)
class Solution:
    links: np.ndarray  # (m,) bool: chosen candidate links, those of divisions included
    divisions: np.ndarray  # (k,) bool: chosen candidate divisions
    groups: int  # independent problems solved
    crowded_clusters: int = 0  # clusters over CROWDED_CLUSTER links and divisions, whose mothers got no divisions


@dataclass(frozen=True)
class Pairs:
    """The options that fill one way out and one way in: candidate links, and leaving a position out."""

    source: np.ndarray  # the position whose way out it fills
    target: np.ndarray  # the position whose way in it fills (the same one for leaving out)
    cost: np.ndarray
    link: np.ndarray  # the candidate link, or -1: leaving the position out

    def __getitem__(self, selection: np.ndarray) -> Pairs:
        return Pairs(self.source[selection], self.target[selection], self.cost[selection], self.link[selection])

    def __len__(self) -> int:
        return len(self.source)

    def __add__(self, other: Pairs) -> Pairs:
        return Pairs(np.r_[self.source, other.source], np.r_[self.target, other.target],
                     np.r_[self.cost, other.cost], np.r_[self.link, other.link])


def candidate_pairs(graph: CandidateGraph, costs: Costs, links: np.ndarray) -> Pairs:
    """`links`, and leaving out each position where that is cheaper than its appearing and disappearing."""
    left_out = np.zeros(0, dtype=np.int64) if costs.leave_out is None else \
        np.flatnonzero(costs.leave_out < costs.appear + costs.disappear)
    return Pairs(np.r_[graph.link_source[links], left_out], np.r_[graph.link_target[links], left_out],
                 np.r_[costs.link[links], costs.leave_out[left_out] if len(left_out) else []],
                 np.r_[links, np.full(len(left_out), -1)].astype(np.int64))


def solve(graph: CandidateGraph, costs: Costs) -> Solution:
    """The cheapest way in and out for every position (see the module docstring)."""
    pairs = candidate_pairs(graph, costs, np.flatnonzero(
        costs.link < costs.disappear[graph.link_source] + costs.appear[graph.link_target]))
    divisions, crowded_clusters = _without_crowded(graph, pairs,
                                                   np.flatnonzero(costs.division < _cheapest_alternative(graph, costs)))
    group_count, group = _slot_groups(graph, pairs, divisions, pairs)
    pair_group, division_group = group[pairs.source], group[graph.division_mother[divisions]]
    windowed = np.bincount(np.r_[pair_group, division_group], minlength=group_count) > _LARGEST_GROUP
    by_program = np.bincount(pair_group, minlength=group_count) > _LARGEST_ASSIGNMENT
    by_program[division_group] = True
    assigned = ~by_program[pair_group] & ~windowed[pair_group]
    chosen = [(pairs[assigned][_assign(pairs[assigned], pair_group[assigned], costs)], np.zeros(0, dtype=np.int64))]
    chunked_pairs = by_program[pair_group] & ~windowed[pair_group]
    chunked_divisions = ~windowed[division_group]
    for chunk_pairs, chunk_divisions in _program_chunks(pairs[chunked_pairs], pair_group[chunked_pairs],
                                                        divisions[chunked_divisions],
                                                        division_group[chunked_divisions]):
        chosen.append(_integer_program(graph, costs, chunk_pairs, chunk_divisions, group))
    for number in np.flatnonzero(windowed):
        chosen += _windows(graph, costs, pairs[pair_group == number], divisions[division_group == number], group)
    chosen_links = np.zeros(graph.link_count, dtype=bool)
    division_mask = np.zeros(len(graph.division_links), dtype=bool)
    for part, part_divisions in chosen:
        chosen_links[part.link[part.link >= 0]] = True
        chosen_links[graph.division_links[part_divisions].ravel()] = True
        division_mask[part_divisions] = True
    return Solution(chosen_links, division_mask, int(np.unique(pair_group).size), crowded_clusters)


def _slot_groups(graph: CandidateGraph, pairs: Pairs, divisions: np.ndarray, tying: Pairs) -> tuple[int, np.ndarray]:
    """The connected groups of the 2n slots (0..n-1 the ways out of each position, n..2n-1 the ways in) that the
    pairs `tying` and the divisions join."""
    n = len(graph.positions)
    daughters = graph.link_target[graph.division_links[divisions]].T.ravel()  # first daughters, then second
    mothers = graph.division_mother[divisions]
    return connected_components(coo_matrix(
        (np.ones(len(tying) + 2 * len(divisions)),
         (np.r_[tying.source, mothers, mothers], n + np.r_[tying.target, daughters])),
        shape=(2 * n, 2 * n)), directed=False)


def _without_crowded(graph: CandidateGraph, pairs: Pairs, divisions: np.ndarray) -> tuple[np.ndarray, int]:
    """`divisions` less those whose mother lies in a crowded cluster (see the module docstring), and how many such
    clusters there are: clusters of the links between consecutive time points (no gap links, no leaving out) and
    the divisions."""
    consecutive = pairs.link >= 0
    consecutive[consecutive] = ~graph.gap_links[pairs.link[consecutive]]
    steps = pairs[consecutive]
    cluster_count, cluster = _slot_groups(graph, pairs, divisions, steps)
    mother_cluster = cluster[graph.division_mother[divisions]]
    size = np.bincount(np.r_[cluster[steps.source], mother_cluster], minlength=cluster_count)
    crowded = (size > CROWDED_CLUSTER) & (size > CROWDED_DENSITY * np.bincount(cluster, minlength=cluster_count))
    return divisions[~crowded[mother_cluster]], int(crowded.sum())


def _chunk_numbers(sizes: np.ndarray, largest: int) -> np.ndarray:
    """Per item of `sizes`, in order, the number of its chunk: consecutive items of about `largest` in all (a
    larger item alone)."""
    chunk = np.zeros(len(sizes), dtype=np.int64)
    count, filled = 0, 0
    for index, size in enumerate(sizes):
        if filled and filled + size > largest:
            count, filled = count + 1, 0
        chunk[index] = count
        filled += size
    return chunk


def _program_chunks(pairs: Pairs, pair_group: np.ndarray, divisions: np.ndarray, division_group: np.ndarray
                    ) -> list[tuple[Pairs, np.ndarray]]:
    """The pairs and divisions of the groups left to the program, in chunks of whole groups of about
    `_LARGEST_PROGRAM` variables (a larger group alone): HiGHS takes more than linear time in the size of a
    program, and the groups are independent."""
    groups, sizes = np.unique(np.r_[pair_group, division_group], return_counts=True)
    chunk = _chunk_numbers(sizes, _LARGEST_PROGRAM)
    pair_chunk = chunk[np.searchsorted(groups, pair_group)]
    division_chunk = chunk[np.searchsorted(groups, division_group)]
    return [(pairs[pair_chunk == number], divisions[division_chunk == number])
            for number in range(chunk.max(initial=-1) + 1)]


def _windows(graph: CandidateGraph, costs: Costs, pairs: Pairs, divisions: np.ndarray, slot_group: np.ndarray
             ) -> list[tuple[Pairs, np.ndarray]]:
    """The chosen pairs and divisions of one large group, solved in windows of consecutive time points (of their
    sources) of about `_LARGEST_PROGRAM` variables, in time order. A window's program holds the pairs and
    divisions whose ways in no earlier window filled, of its time points and the next one (a look ahead: the
    positions there compete for the same targets), and keeps the choices of its own time points. Appearing costs
    nothing in it for the positions that a later window can still link to (else its last time points would grab
    them, at any cost below an appearance)."""
    pairs = pairs[np.argsort(graph.time[pairs.source], kind="stable")]
    divisions = divisions[np.argsort(graph.time[graph.division_mother[divisions]], kind="stable")]
    pair_time, division_time = graph.time[pairs.source], graph.time[graph.division_mother[divisions]]
    times, sizes = np.unique(np.r_[pair_time, division_time], return_counts=True)
    window = _chunk_numbers(sizes, _LARGEST_PROGRAM)
    firsts = times[np.r_[0, np.flatnonzero(np.diff(window)) + 1]] if len(times) else times
    aheads = np.r_[firsts[1:], np.iinfo(np.int64).max - 2]  # per window the next time point
    filled = np.zeros(len(graph.positions), dtype=bool)
    chosen = []
    for first, ahead in zip(firsts, aheads):
        window_pairs = pairs[np.searchsorted(pair_time, first):np.searchsorted(pair_time, ahead, side="right")]
        window_pairs = window_pairs[~filled[window_pairs.target]]
        window_divisions = divisions[np.searchsorted(division_time, first):
                                     np.searchsorted(division_time, ahead, side="right")]
        window_divisions = window_divisions[
            ~filled[graph.link_target[graph.division_links[window_divisions]]].any(axis=1)]
        window_costs = replace(costs, appear=np.where(graph.time >= ahead + 2, 0.0, costs.appear))
        window_pairs, window_divisions = _solve_part(graph, window_costs, window_pairs, window_divisions, slot_group)
        window_pairs = window_pairs[graph.time[window_pairs.source] < ahead]
        window_divisions = window_divisions[graph.time[graph.division_mother[window_divisions]] < ahead]
        filled[window_pairs.target] = True
        filled[graph.link_target[graph.division_links[window_divisions]].ravel()] = True
        chosen.append((window_pairs, window_divisions))
    return chosen


def _solve_part(graph: CandidateGraph, costs: Costs, pairs: Pairs, divisions: np.ndarray, slot_group: np.ndarray
                ) -> tuple[Pairs, np.ndarray]:
    """The chosen pairs and divisions of a part of a group: a dense assignment problem where it has no divisions
    and few pairs, else a program."""
    if len(divisions) == 0 and len(pairs) <= _LARGEST_ASSIGNMENT:
        return pairs[_assign_group(pairs, np.arange(len(pairs)), costs)], divisions
    return _integer_program(graph, costs, pairs, divisions, slot_group)


def _cheapest_alternative(graph: CandidateGraph, costs: Costs) -> np.ndarray:
    """(k,) the cheapest other way to fill the same slots as each division."""
    first, second = graph.division_links[:, 0], graph.division_links[:, 1]
    appear_first, appear_second = costs.appear[graph.link_target[first]], costs.appear[graph.link_target[second]]
    return np.minimum.reduce([costs.link[first] + appear_second, costs.link[second] + appear_first,
                              costs.disappear[graph.division_mother] + appear_first + appear_second])


def _assign(pairs: Pairs, groups: np.ndarray, costs: Costs) -> np.ndarray:
    """The indices of the pairs chosen in groups without divisions (of at most `_LARGEST_ASSIGNMENT` pairs): one
    assignment problem per group, where a source may also disappear and a target appear. Groups of one pair take
    it (it is cheaper than the alternative)."""
    order = np.argsort(groups, kind="stable")
    groups = groups[order]
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]]) if len(order) else np.zeros(0, dtype=int)
    ends = np.r_[starts[1:], len(order)]
    chosen = [order[starts[ends - starts == 1]]]
    for start, end in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
        chosen.append(_assign_group(pairs, order[start:end], costs))
    return np.concatenate(chosen)


def _assign_group(pairs: Pairs, indices: np.ndarray, costs: Costs) -> np.ndarray:
    """One group's assignment problem, dense: rows the sources and an "appears" row per target, columns the targets
    and a "disappears" column per source; the spare rows and columns of linked sources and targets meet at cost
    0."""
    group = pairs[indices]
    sources, source_index = np.unique(group.source, return_inverse=True)
    targets, target_index = np.unique(group.target, return_inverse=True)
    s, t = len(sources), len(targets)
    matrix = np.full((s + t, t + s), np.inf)
    matrix[source_index, target_index] = group.cost
    matrix[np.arange(s), t + np.arange(s)] = costs.disappear[sources]
    matrix[s + np.arange(t), np.arange(t)] = costs.appear[targets]
    matrix[s:, t:] = 0.0
    rows, columns = linear_sum_assignment(matrix)
    taken = (rows < s) & (columns < t)
    lookup = {(a, b): index for a, b, index in zip(source_index, target_index, indices)}
    return np.array([lookup[a, b] for a, b in zip(rows[taken], columns[taken])], dtype=np.int64)


def _integer_program(graph: CandidateGraph, costs: Costs, pairs: Pairs, divisions: np.ndarray,
                     slot_group: np.ndarray | None = None) -> tuple[Pairs, np.ndarray]:
    """The chosen pairs (alone) and divisions of the remaining groups, solved as one linear program; where its
    solution is not whole, the groups (by `slot_group`, of the 2n ways out and in) that are not are solved again
    as one integer program (all, without `slot_group`)."""
    if len(pairs) == 0 and len(divisions) == 0:
        return pairs, np.zeros(0, dtype=np.int64)
    n = len(graph.positions)
    daughters = graph.link_target[graph.division_links[divisions]].T.ravel()  # first daughters, then second
    mothers = graph.division_mother[divisions]
    sources, source_row = np.unique(np.r_[pairs.source, mothers], return_inverse=True)
    targets, target_row = np.unique(np.r_[pairs.target, daughters], return_inverse=True)
    m, k, s, t = len(pairs), len(divisions), len(sources), len(targets)
    target_row = s + target_row
    rows = np.r_[source_row[:m], target_row[:m], source_row[m:], target_row[m:m + k], target_row[m + k:],
                 np.arange(s + t)]  # each source's ways out, each target's ways in, sum to 1
    columns = np.r_[np.arange(m), np.arange(m), m + np.arange(k), m + np.arange(k), m + np.arange(k),
                    m + k + np.arange(s + t)]
    matrix = coo_matrix((np.ones(len(rows)), (rows, columns)), shape=(s + t, m + k + s + t)).tocsr()
    objective = np.r_[pairs.cost, costs.division[divisions], costs.disappear[sources], costs.appear[targets]]
    constraints = LinearConstraint(matrix, 1, 1)
    whole = slot_group is not None
    result = milp(objective, integrality=np.full(len(objective), int(not whole)), bounds=Bounds(0, 1),
                  constraints=constraints)
    if result.x is None:
        raise RuntimeError(f"the track solver found no solution: {result.message}")
    x = result.x
    fractional = np.minimum(x, 1 - x) >= _WHOLE
    if fractional.any() and whole:
        variable_group = slot_group[np.r_[pairs.source, mothers, sources, n + targets]]
        again = np.isin(variable_group, variable_group[fractional])
        redone_pairs, redone_divisions = _integer_program(graph, costs, pairs[again[:m]],
                                                          divisions[again[m:m + k]])
        chosen = (x > 0.5) & ~again
        return (pairs[chosen[:m]] + redone_pairs,
                np.r_[divisions[chosen[m:m + k]], redone_divisions].astype(np.int64))
    chosen = x > 0.5
    return pairs[chosen[:m]], divisions[chosen[m:m + k]]
