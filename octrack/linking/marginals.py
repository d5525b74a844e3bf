"""How sure the tracker is of each link and division: marginal probabilities over the whole tracking problem.

The tracker's costs define a probability for every complete solution (every position one way in and one way
out, see solver.py): P(solution) ∝ exp(−cost(solution) / T), with T the temperature (OrganoidTracker's name
and default, 1.5; `octrack calibrate` fits it on time points with ground truth). A link's marginal
probability is the total probability of the solutions that contain it, a division's of those that contain
that division; what octrack writes as `marginal_probability` (and 1 − it as `error_probability`).

Exact, not local. The cost of a solution is a sum over the ways out of the positions ("slots": a link, a
division, disappearing, being left out) and the ways in (a link, being a daughter, appearing), so the
distribution factorises exactly over the connected parts of the graph that joins out-slots to in-slots by
candidate links, divisions and leaving out, as the solver's problem does. Leaving a position out is, as in the
solver, an option of its way out that fills its own way in (at `Costs.leave_out` instead of appearing plus
disappearing; both stay possible), so this is the distribution whose most likely solution the solver finds; it
ties the two ways of every position, so with the default costs a whole embryo is one part. Each part is summed exactly, by dynamic programming: its sources
(out-slots) are taken one by one in reverse Cuthill–McKee order (neighbours close in the order), the state
being which of the in-slots that both earlier and later sources can reach are taken already; a forward and a
backward pass give every option's marginal. That costs time in proportion to the number of such states,
which stays small for the parts of real data (a few cells competing for a few positions).

Where a part has too many states (`MAX_STATES`: crowded tissue, where every cell has several candidates of
similar cost, e.g. the whole field of a dense 2D movie), its marginals come from loopy belief propagation on
the same model (each source takes exactly one option, each target is filled at most once): the Bethe
approximation, which for matching problems is known to be close (within a few hundredths on the worst case
of the tests, positions all next to each other). Chosen over perturb-and-MAP sampling, which draws
from a different distribution than the Gibbs one unless the perturbations are of full order, and over local
sums with the surroundings held at the chosen solution, which made crowded links look certain. Both
methods are deterministic and resolve probabilities near 0.99, which a few hundred samples cannot.

Options whose cost exceeds their cheapest alternative (filling the same slots with appearing and
disappearing) by more than ln(1e6)·T are left out: each has a marginal below 1e-6.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, reverse_cuthill_mckee

from octrack.linking.costs import Costs
from octrack.linking.graph import CandidateGraph
from octrack.linking.solver import Solution, _cheapest_alternative  # the solver's rule for divisions

DEFAULT_TEMPERATURE = 1.5  # OrganoidTracker's
MAX_STATES = 1024  # per step of the exact sum; beyond it, belief propagation (see the module docstring)
BP_ITERATIONS, BP_DAMPING, BP_TOLERANCE = 500, 0.5, 1e-7
_FAR = 700.0  # log odds beyond which a message is certain (kept finite)
_NEGLIGIBLE = np.log(1e6)  # options dearer than their alternative by this many T are left out


@dataclass(frozen=True)
class Marginals:
    """Marginal probabilities at one temperature."""

    link: np.ndarray  # (m,) that the candidate link is in the lineage (alone or as part of a division)
    division: np.ndarray  # (k,) that the candidate division is
    disappear: np.ndarray  # (n,) that the position's track ends there (or it is left out)
    appear: np.ndarray  # (n,) that the position's track starts there (or it is left out)
    left_out: np.ndarray  # (n,) that the position is in no track (at the cost `Costs.leave_out`)
    temperature: float


@dataclass(frozen=True)
class _Options:
    """Every way out of a source, as rows: its source, the targets it fills (-1: none) and its log weight."""

    source: np.ndarray  # (o,)
    targets: np.ndarray  # (o, 2)
    log_weight: np.ndarray  # (o,)  −(cost − the appearance costs of its targets) / T


class _TooManyStates(Exception):
    pass


def marginals(graph: CandidateGraph, costs: Costs, solution: Solution,
              temperature: float = DEFAULT_TEMPERATURE) -> Marginals:
    """The marginal probability of every candidate link and division, and of every position's track ending and
    starting, at `temperature` (see the module's docstring)."""
    if not temperature > 0:
        raise ValueError(f"the temperature must be above 0, not {temperature}")
    n, m, k = len(graph.positions), graph.link_count, len(graph.division_links)
    links = np.flatnonzero(solution.links | (costs.link - costs.disappear[graph.link_source]
                                             - costs.appear[graph.link_target] < _NEGLIGIBLE * temperature))
    divisions = np.flatnonzero(solution.divisions | (costs.division - _cheapest_alternative(graph, costs)
                                                     < _NEGLIGIBLE * temperature))
    daughters = graph.link_target[graph.division_links[divisions]]
    left_out = _left_out_options(costs, temperature)
    options = _Options(
        source=np.r_[graph.link_source[links], graph.division_mother[divisions], left_out, np.arange(n)],
        targets=np.r_[np.c_[graph.link_target[links], np.full(len(links), -1)], daughters.reshape(-1, 2),
                      np.c_[left_out, np.full(len(left_out), -1)], np.full((n, 2), -1)].astype(np.int64),
        log_weight=-np.r_[costs.link[links] - costs.appear[graph.link_target[links]],
                          costs.division[divisions] - costs.appear[daughters].sum(axis=1),
                          costs.leave_out[left_out] - costs.appear[left_out] if len(left_out) else [],
                          costs.disappear] / temperature)
    probability = _option_marginals(options, n)
    ends = len(links), len(links) + len(divisions), len(links) + len(divisions) + len(left_out)
    link, division, left = np.zeros(m), np.zeros(k), np.zeros(n)
    link[links] = probability[:ends[0]]
    division[divisions] = probability[ends[0]:ends[1]]
    left[left_out] = probability[ends[1]:ends[2]]
    np.add.at(link, graph.division_links[divisions].ravel(), np.repeat(division[divisions], 2))
    filled = np.zeros(n)
    np.add.at(filled, graph.link_target, link)
    return Marginals(np.clip(link, 0, 1), division, np.clip(probability[ends[2]:] + left, 0, 1),
                     np.clip(1 - filled, 0, 1), np.clip(left, 0, 1), temperature)


def _left_out_options(costs: Costs, temperature: float) -> np.ndarray:
    """The positions that may be left out of every track: the option fills the position's own way out and way in
    (as the solver's pairs do), so it ties the two; left out where dearer than appearing and disappearing by
    more than ln(1e6)·T, as links are."""
    if costs.leave_out is None:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(costs.leave_out - costs.appear - costs.disappear < _NEGLIGIBLE * temperature)


def _option_marginals(options: _Options, n: int) -> np.ndarray:
    """(o,) the marginal of every option, part by part."""
    has_target = options.targets >= 0
    rows = np.repeat(options.source, 2)[has_target.ravel()]
    columns = n + options.targets[has_target]
    count, part = connected_components(coo_matrix((np.ones(len(rows)), (rows, columns)), shape=(2 * n, 2 * n)),
                                       directed=False)
    probability = np.zeros(len(options.source))
    crowded = []
    by_part = defaultdict(list)
    for option, source in enumerate(options.source):
        by_part[part[source]].append(option)
    for members in by_part.values():
        members = np.array(members)
        if np.all(options.source[members] == options.source[members[0]]):  # one source: its options' shares
            weights = np.exp(options.log_weight[members] - options.log_weight[members].max())
            probability[members] = weights / weights.sum()
            continue
        try:
            probability[members] = _exact(options, members)
        except _TooManyStates:
            crowded.append(members)
    if crowded:
        members = np.concatenate(crowded)
        probability[members] = _belief_propagation(options, members, n)
    return probability


def _exact(options: _Options, members: np.ndarray) -> np.ndarray:
    """The exact marginals of the options `members`: all the options of their sources, no others."""
    sources, source_index = np.unique(options.source[members], return_inverse=True)
    targets = options.targets[members]
    order = _source_order(source_index, targets, len(sources))
    by_source = np.argsort(source_index, kind="stable")
    starts = np.searchsorted(source_index[by_source], np.arange(len(sources) + 1))
    steps = [by_source[starts[source]:starts[source + 1]] for source in order]  # the options of each step
    forward, masks, keeps, weights = [{0: 1.0}], [], [], []
    for step, (step_masks, keep) in zip(steps, _step_masks(steps, targets)):
        weight = np.exp(options.log_weight[members[step]] - options.log_weight[members[step]].max())
        states: dict[int, float] = defaultdict(float)
        for state, value in forward[-1].items():
            for mask, w in zip(step_masks, weight):
                if not state & mask:
                    states[(state | mask) & keep] += value * w
        if len(states) > MAX_STATES:
            raise _TooManyStates
        forward.append(_normalised(states))
        masks.append(step_masks)
        keeps.append(keep)
        weights.append(weight)
    backward = {0: 1.0}
    probability = np.zeros(len(members))
    for index in range(len(steps) - 1, -1, -1):
        step, weight, keep = steps[index], weights[index], keeps[index]
        totals = np.zeros(len(step))
        states = {}
        for state, value in forward[index].items():
            through = [0.0 if state & mask else w * backward.get((state | mask) & keep, 0.0)
                       for mask, w in zip(masks[index], weight)]
            states[state] = sum(through)
            totals += value * np.array(through)
        probability[step] = totals / totals.sum()
        backward = _normalised(states)
    return probability


def _normalised(states: dict[int, float]) -> dict[int, float]:
    total = sum(states.values())
    return {state: value / total for state, value in states.items()}


def _source_order(source_index: np.ndarray, targets: np.ndarray, count: int) -> np.ndarray:
    """Sources in reverse Cuthill–McKee order of the graph of sources that share a target (small parts: as
    they are)."""
    if count <= 2:
        return np.arange(count)
    has_target = targets >= 0
    source, target = np.repeat(source_index, 2)[has_target.ravel()], targets[has_target]
    target_index = np.unique(target, return_inverse=True)[1]
    incidence = csr_matrix((np.ones(len(source)), (source, target_index)), shape=(count, target_index.max() + 1))
    return reverse_cuthill_mckee((incidence @ incidence.T).tocsr(), symmetric_mode=True).astype(np.int64)


def _step_masks(steps: list[np.ndarray], targets: np.ndarray) -> Iterator[tuple[list[int], int]]:
    """Per step, in order: the bit mask of the targets that each of its options (rows of `targets`) fills, and the
    mask of the targets that both this or an earlier step and a later step can fill (the state's after it).

    A target holds a bit only from the first step that can fill it to the last, and a freed bit is given to the
    next new target: the masks stay as wide as the most targets open at once (not as the part: a whole embryo).
    Step by step, so that a sum given up for too many states has made only the masks of the steps it took (on a
    crowded movie, as one part, all its masks took gigabytes: thousands of targets open at once)."""
    first, last = {}, {}
    for number, step in enumerate(steps):
        for target in targets[step].ravel().tolist():
            if target >= 0:
                first.setdefault(target, number)
                last[target] = number
    opening, closing = defaultdict(list), defaultdict(list)
    for target, number in first.items():
        opening[number].append(target)
        closing[last[target]].append(target)
    free, bit, open_mask, width = [], {}, 0, 0
    for number, step in enumerate(steps):
        for target in opening[number]:
            if free:
                bit[target] = heapq.heappop(free)
            else:
                bit[target], width = 1 << width, width + 1
            open_mask |= bit[target]
        masks = [sum(bit[target] for target in row if target >= 0) for row in targets[step].tolist()]
        for target in closing[number]:
            open_mask &= ~bit[target]
            heapq.heappush(free, bit.pop(target))
        yield masks, open_mask


def _belief_propagation(options: _Options, members: np.ndarray, n: int) -> np.ndarray:
    """Approximate marginals of the options `members` (all the options of their sources) by loopy belief
    propagation: every source takes exactly one option, every target is filled at most once (else it appears);
    messages as log odds, damped, until they settle."""
    source = options.source[members]
    log_weight = options.log_weight[members]
    targets = options.targets[members]
    has_target = targets >= 0
    edge_option = np.repeat(np.arange(len(members)), 2)[has_target.ravel()]
    edge_target = targets[has_target]
    by_source, by_target = _LogSums(source, n), _LogSums(edge_target, n)
    from_targets = np.zeros(len(edge_option))  # log odds messages of the targets to the options
    for _ in range(BP_ITERATIONS):
        incoming = np.bincount(edge_option, from_targets, minlength=len(members))
        # the source's message to each option: exactly one of its options is taken
        to_option = np.clip(-by_source.of_others(log_weight + incoming), -_FAR, _FAR)
        # each option's message to each of its targets, and the targets' answers: at most one is taken
        to_target = (log_weight + to_option + incoming)[edge_option] - from_targets
        answer = np.clip(-np.logaddexp(0.0, by_target.of_others(to_target)), -_FAR, _FAR)
        change = np.abs(answer - from_targets).max(initial=0.0)
        from_targets = BP_DAMPING * from_targets + (1 - BP_DAMPING) * answer
        if change < BP_TOLERANCE:
            break
    belief = log_weight + np.bincount(edge_option, from_targets, minlength=len(members))
    return np.exp(belief - by_source.totals(belief)[source])


class _LogSums:
    """log Σ exp(value) over the entries of each group, for one grouping of the entries (sorted once: belief
    propagation sums over the same groups in every iteration)."""

    def __init__(self, groups: np.ndarray, size: int) -> None:
        self.groups, self.size = groups, size
        self.order = np.argsort(groups, kind="stable")
        ordered = groups[self.order]
        self.starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(groups) else \
            np.zeros(0, dtype=np.int64)
        self.keys = ordered[self.starts]
        self.counts = np.diff(np.r_[self.starts, len(groups)])

    def totals(self, values: np.ndarray) -> np.ndarray:
        """(size,) per group; −inf for an empty group."""
        totals = np.full(self.size, -np.inf)
        if len(values):
            ordered = values[self.order]
            top = np.maximum.reduceat(ordered, self.starts)
            top = np.where(np.isfinite(top), top, 0.0)
            with np.errstate(divide="ignore"):
                totals[self.keys] = top + np.log(np.add.reduceat(np.exp(ordered - np.repeat(top, self.counts)),
                                                                 self.starts))
        return totals

    def of_others(self, values: np.ndarray) -> np.ndarray:
        """Per entry, log Σ exp(value) over the other entries of its group (−inf where there are none)."""
        totals = self.totals(values)[self.groups]
        with np.errstate(divide="ignore"):
            return totals + np.log1p(-np.minimum(np.exp(values - totals), 1.0))
