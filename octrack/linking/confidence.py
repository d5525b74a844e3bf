"""How sure the tracker is of each link it chose: the probability of that link against its local alternatives.

A link A→B competes with everything else A could do next (other links, other divisions, disappearing) and
everything else that could lead into B (other links, divisions, appearing). Each option weighs
exp(−cost); the link's share of A's ways out times its share of B's ways in is its confidence. A division's
options count for each of its two links. So a link without rivals scores near 1, and one with a rival that
costs the same scores 0.5 or less: a person reviews the links of lowest confidence first.
"""

from __future__ import annotations

import numpy as np

from octrack.linking.costs import Costs
from octrack.linking.graph import CandidateGraph


def link_confidence(graph: CandidateGraph, costs: Costs) -> np.ndarray:
    """(m,) confidence of every candidate link, were it chosen."""
    n, m = len(graph.positions), graph.link_count
    daughters = graph.link_target[graph.division_links]
    mothers = graph.division_mother
    # the ways out of each position, and into each: (position, cost) pairs
    out_total = _log_totals(n, np.r_[graph.link_source, mothers, np.arange(n)],
                            np.r_[costs.link, costs.division, costs.disappear])
    in_total = _log_totals(n, np.r_[graph.link_target, daughters[:, 0], daughters[:, 1], np.arange(n)],
                           np.r_[costs.link, costs.division, costs.division, costs.appear])
    # the options that contain each link: the link itself and the divisions it is one of
    owners = np.r_[np.arange(m), graph.division_links[:, 0], graph.division_links[:, 1]]
    with_link = _log_totals(m, owners, np.r_[costs.link, costs.division, costs.division])
    log_share_out = with_link - out_total[graph.link_source]
    log_share_in = with_link - in_total[graph.link_target]
    return np.exp(np.minimum(log_share_out + log_share_in, 0.0))


def _log_totals(size: int, groups: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """log Σ exp(−cost) per group."""
    order = np.argsort(groups, kind="stable")
    groups, values = groups[order], -costs[order]
    totals = np.full(size, -np.inf)
    if len(groups) == 0:
        return totals
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    ends = np.r_[starts[1:], len(groups)]
    maxima = np.maximum.reduceat(values, starts)
    sums = np.add.reduceat(np.exp(values - np.repeat(maxima, ends - starts)), starts)
    totals[groups[starts]] = maxima + np.log(sums)
    return totals
