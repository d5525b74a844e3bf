"""The cheapest tracks through the candidate graph: exact, split into small independent problems.

Every position takes exactly one way in (a link from the time point before, being a daughter of a
division, or appearing) and exactly one way out (a link to the time point after, dividing, or disappearing);
the cost of a solution is the sum of the costs of the ways chosen. A position that only appears and
disappears is in no track: leaving a detection out costs its appearance plus its disappearance.

The ways out of the positions at t and the ways in of those at t+1 are tied to each other only by the
candidates between t and t+1, so the problem splits exactly into one per pair of consecutive time points,
and those into connected groups of positions. First, what can never be cheapest goes: a link dearer than
its ends disappearing and appearing, a division dearer than one of its links with the other daughter
appearing. Groups without a division are assignment problems (sparse: `min_weight_full_bipartite_matching`);
those with one as integer linear programs by HiGHS (`scipy.optimize.milp`: its linear relaxation first, which
is nearly always whole already), a few thousand links and divisions each. So hundreds of thousands of candidate
links take seconds, and no split into time windows is needed: the groups are exact parts of the whole. The one
exception bounds time and memory: a group so crowded that it holds over `CROWDED_GROUP` links and divisions is
linked without divisions (see `Solution.crowded_groups`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, min_weight_full_bipartite_matching

from octrack.linking.costs import Costs
from octrack.linking.graph import CandidateGraph

# Bounds on time and memory (docs/reliability.md, "Load"): links and divisions per integer program (whole
# groups; 2 000 was the fastest of 500, 2 000 and 20 000), and the size of a group above which it is linked
# without divisions, as one sparse assignment problem (positions crowded closer than they move: one such group
# of 5 000 positions per time point took 49 s as an integer program, against 0.5 s).
PROGRAM_SIZE = 2_000
CROWDED_GROUP = 20_000
_WHOLE = 1e-6  # how far from 0 or 1 a relaxed solution may be and still count as whole


@dataclass(frozen=True)
class Solution:
    links: np.ndarray  # (m,) bool: chosen candidate links, those of divisions included
    divisions: np.ndarray  # (k,) bool: chosen candidate divisions
    groups: int  # independent problems solved
    crowded_groups: int = 0  # groups over CROWDED_GROUP links and divisions, linked without divisions


def solve(graph: CandidateGraph, costs: Costs) -> Solution:
    """The cheapest way in and out for every position (see the module docstring)."""
    n = len(graph.positions)
    links = np.flatnonzero(costs.link < costs.disappear[graph.link_source] + costs.appear[graph.link_target])
    divisions = np.flatnonzero(costs.division < _cheapest_alternative(graph, costs))
    daughters = graph.link_target[graph.division_links[divisions]].T.ravel()  # first daughters, then second
    mothers = graph.division_mother[divisions]
    # slots: 0..n-1 the ways out of each position, n..2n-1 the ways in
    group_count, group = connected_components(coo_matrix(
        (np.ones(len(links) + 2 * len(divisions)),
         (np.r_[graph.link_source[links], mothers, mothers], n + np.r_[graph.link_target[links], daughters])),
        shape=(2 * n, 2 * n)), directed=False)
    link_group, division_group = group[graph.link_source[links]], group[mothers]
    crowded = np.bincount(np.r_[link_group, division_group], minlength=group_count) > CROWDED_GROUP
    divisions, division_group = divisions[~crowded[division_group]], division_group[~crowded[division_group]]
    with_division = np.zeros(group_count, dtype=bool)
    with_division[division_group] = True
    chosen_links = np.zeros(graph.link_count, dtype=bool)
    chosen_links[_assign(graph, costs, links[~with_division[link_group]], link_group[~with_division[link_group]])] \
        = True
    chosen, chosen_divisions = _integer_programs(graph, costs, links[with_division[link_group]],
                                                 link_group[with_division[link_group]], divisions, division_group)
    chosen_links[chosen] = True
    chosen_links[graph.division_links[chosen_divisions].ravel()] = True
    division_mask = np.zeros(len(graph.division_links), dtype=bool)
    division_mask[chosen_divisions] = True
    return Solution(chosen_links, division_mask, int(np.unique(link_group).size), int(crowded.sum()))


def _cheapest_alternative(graph: CandidateGraph, costs: Costs) -> np.ndarray:
    """(k,) the cheapest other way to fill the same slots as each division."""
    first, second = graph.division_links[:, 0], graph.division_links[:, 1]
    appear_first, appear_second = costs.appear[graph.link_target[first]], costs.appear[graph.link_target[second]]
    return np.minimum.reduce([costs.link[first] + appear_second, costs.link[second] + appear_first,
                              costs.disappear[graph.division_mother] + appear_first + appear_second])


def _assign(graph: CandidateGraph, costs: Costs, links: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The links chosen in groups without divisions: one assignment problem per group, where a source may
    also disappear and a target appear. Groups of one link take it (it is cheaper than the alternative)."""
    order = np.argsort(groups, kind="stable")
    links, groups = links[order], groups[order]
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]]) if len(links) else np.zeros(0, dtype=int)
    ends = np.r_[starts[1:], len(links)]
    chosen = [links[starts[ends - starts == 1]]]
    for start, end in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
        chosen.append(_assign_group(graph, costs, links[start:end]))
    return np.concatenate(chosen)


def _assign_group(graph: CandidateGraph, costs: Costs, links: np.ndarray) -> np.ndarray:
    """One assignment problem, sparse: rows are the sources and one "appears" row per target, columns the
    targets and one "disappears" column per source; the spare rows and columns of linked pairs meet through
    each link's reverse (cost 0). Every full matching has s + t pairs, so costs shift to positive (as the
    sparse solver needs) without changing which is cheapest."""
    sources, source_index = np.unique(graph.link_source[links], return_inverse=True)
    targets, target_index = np.unique(graph.link_target[links], return_inverse=True)
    s, t = len(sources), len(targets)
    values = np.r_[costs.link[links], costs.disappear[sources], costs.appear[targets], np.zeros(len(links))]
    rows = np.r_[source_index, np.arange(s), s + np.arange(t), s + target_index]
    columns = np.r_[target_index, t + np.arange(s), np.arange(t), t + source_index]
    matrix = coo_matrix((values - values.min() + 1.0, (rows, columns)), shape=(s + t, t + s)).tocsr()
    column_of_row = min_weight_full_bipartite_matching(matrix)[1][:s]
    taken = column_of_row < t
    lookup = {(a, b): link for a, b, link in zip(source_index, target_index, links)}
    return np.array([lookup[a, b] for a, b in zip(np.flatnonzero(taken), column_of_row[taken])], dtype=np.int64)


def _integer_programs(graph: CandidateGraph, costs: Costs, links: np.ndarray, link_group: np.ndarray,
                      divisions: np.ndarray, division_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The groups with divisions, as integer programs of whole groups with about `PROGRAM_SIZE` links and
    divisions each (a bigger group alone): exact, as the groups are independent, in bounded memory."""
    groups, sizes = np.unique(np.r_[link_group, division_group], return_counts=True)
    batch_of = dict(zip(groups.tolist(), (np.cumsum(sizes) // PROGRAM_SIZE).tolist()))
    link_batch = np.array([batch_of[group] for group in link_group.tolist()], dtype=np.int64)
    division_batch = np.array([batch_of[group] for group in division_group.tolist()], dtype=np.int64)
    chosen_links, chosen_divisions = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for batch in np.unique(division_batch):
        chosen = _integer_program(graph, costs, links[link_batch == batch], divisions[division_batch == batch])
        chosen_links.append(chosen[0])
        chosen_divisions.append(chosen[1])
    return np.concatenate(chosen_links), np.concatenate(chosen_divisions)


def _integer_program(graph: CandidateGraph, costs: Costs, links: np.ndarray, divisions: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The chosen links (alone) and divisions of the groups with divisions, all solved as one program."""
    if len(divisions) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    daughters = graph.link_target[graph.division_links[divisions]].T.ravel()  # first daughters, then second
    mothers = graph.division_mother[divisions]
    sources, source_row = np.unique(np.r_[graph.link_source[links], mothers], return_inverse=True)
    targets, target_row = np.unique(np.r_[graph.link_target[links], daughters], return_inverse=True)
    m, k, s, t = len(links), len(divisions), len(sources), len(targets)
    target_row = s + target_row
    rows = np.r_[source_row[:m], target_row[:m], source_row[m:], target_row[m:m + k], target_row[m + k:],
                 np.arange(s + t)]  # each source's ways out, each target's ways in, sum to 1
    columns = np.r_[np.arange(m), np.arange(m), m + np.arange(k), m + np.arange(k), m + np.arange(k),
                    m + k + np.arange(s + t)]
    matrix = coo_matrix((np.ones(len(rows)), (rows, columns)), shape=(s + t, m + k + s + t)).tocsr()
    objective = np.r_[costs.link[links], costs.division[divisions], costs.disappear[sources], costs.appear[targets]]
    constraints = LinearConstraint(matrix, 1, 1)
    result = milp(objective, integrality=np.zeros(len(objective)), bounds=Bounds(0, 1), constraints=constraints)
    if result.x is not None and np.all(np.minimum(result.x, 1 - result.x) < _WHOLE):
        x = result.x
    else:
        result = milp(objective, integrality=np.ones(len(objective)), bounds=Bounds(0, 1), constraints=constraints)
        if result.x is None:
            raise RuntimeError(f"the track solver found no solution: {result.message}")
        x = result.x
    chosen = x > 0.5
    return links[chosen[:m]], divisions[chosen[m:m + k]]
