"""What a person should check: the chosen links and divisions whose marginal probability is below a threshold,
least certain first, each with what the tracker could have chosen instead (and how likely that was)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from octrack.linking.graph import CandidateGraph
from octrack.linking.marginals import Marginals
from octrack.linking.solver import Solution
from octrack.tracking.model import Position

LINK, DIVISION = "link", "division"
_SHOWN_FROM = 0.01  # alternatives less likely than this are left out of the list


@dataclass(frozen=True)
class ReviewItem:
    kind: str  # LINK or DIVISION
    source: Position  # the link's earlier end, or the mother
    targets: tuple[Position, ...]  # the link's later end, or the two daughters
    marginal_probability: float
    alternatives: tuple[tuple[str, float], ...]  # what else could have happened there, most likely first


def review_items(graph: CandidateGraph, marginals: Marginals, solution: Solution, below: float) -> list[ReviewItem]:
    """The chosen links and divisions with a marginal probability below `below`, least certain first."""
    index = _Index(graph)
    items = [ReviewItem(LINK, graph.positions[graph.link_source[link]], (graph.positions[graph.link_target[link]],),
                        float(marginals.link[link]), _link_alternatives(graph, index, marginals, int(link)))
             for link in np.flatnonzero(solution.links & (marginals.link < below))]
    mothers = graph.division_mother
    items += [ReviewItem(DIVISION, graph.positions[mothers[division]],
                         tuple(graph.positions[graph.link_target[link]] for link in graph.division_links[division]),
                         float(marginals.division[division]),
                         _likely(_ways_out(graph, index, marginals, mothers[division], except_division=division)))
              for division in np.flatnonzero(solution.divisions & (marginals.division < below))]
    return sorted(items, key=lambda item: (item.marginal_probability, item.source.t))


class _Index:
    """The candidate links and divisions of each position, and the divisions of each link, looked up in time
    proportional to their number (a crowded tracking may need every link reviewed)."""

    def __init__(self, graph: CandidateGraph) -> None:
        n, m, k = len(graph.positions), graph.link_count, len(graph.division_links)
        self.links_from = _Grouped(graph.link_source, np.arange(m), n)
        self.links_into = _Grouped(graph.link_target, np.arange(m), n)
        self.divisions_of_mother = _Grouped(graph.division_mother, np.arange(k), n)
        self.divisions_with_link = _Grouped(graph.division_links.ravel(), np.repeat(np.arange(k), 2), m)


class _Grouped:
    """Per key 0..count-1, the values of the entries with that key."""

    def __init__(self, keys: np.ndarray, values: np.ndarray, count: int) -> None:
        order = np.argsort(keys, kind="stable")
        self.values = values[order]
        self.bounds = np.searchsorted(keys[order], np.arange(count + 1))

    def __getitem__(self, key: int) -> np.ndarray:
        return self.values[self.bounds[key]:self.bounds[key + 1]]


def _link_alternatives(graph: CandidateGraph, index: _Index, marginals: Marginals, link: int
                       ) -> tuple[tuple[str, float], ...]:
    source, target = graph.link_source[link], graph.link_target[link]
    found = _ways_out(graph, index, marginals, source, except_link=link)
    found += [(f"{_where(graph, graph.link_source[other])} → it instead", float(marginals.link[other]))  # alone or
              for other in index.links_into[target] if other != link]  # dividing
    found.append(("its later end starts a track", float(marginals.appear[target])))
    return _likely(found)


def _ways_out(graph: CandidateGraph, index: _Index, marginals: Marginals, source: int, *, except_link: int = -1,
              except_division: int = -1) -> list[tuple[str, float]]:
    """What else the source could do, each with its probability: link alone (not as part of a division), divide,
    or end its track."""
    out = [(f"→ {_where(graph, graph.link_target[link])} instead, without dividing",
            float(marginals.link[link] - marginals.division[index.divisions_with_link[link]].sum()))
           for link in index.links_from[source] if link != except_link]
    out += [(f"divides into {_where(graph, graph.link_target[a])} and {_where(graph, graph.link_target[b])}",
             float(marginals.division[division]))
            for division in index.divisions_of_mother[source]
            if division != except_division and except_link not in graph.division_links[division]
            for a, b in [graph.division_links[division]]]
    out.append(("the track ends there", float(marginals.disappear[source])))
    return out


def _likely(found: list[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted(((text, p) for text, p in found if p >= _SHOWN_FROM), key=lambda item: -item[1]))


def _where(graph: CandidateGraph, index: int) -> str:
    p = graph.positions[index]
    return f"t={p.t} (z, y, x) = ({p.z:g}, {p.y:g}, {p.x:g}) px"
