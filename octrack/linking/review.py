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
    items = [ReviewItem(LINK, graph.positions[graph.link_source[link]], (graph.positions[graph.link_target[link]],),
                        float(marginals.link[link]), _link_alternatives(graph, marginals, int(link)))
             for link in np.flatnonzero(solution.links & (marginals.link < below))]
    items += [ReviewItem(DIVISION, graph.positions[graph.division_mother[division]],
                         tuple(graph.positions[graph.link_target[link]] for link in graph.division_links[division]),
                         float(marginals.division[division]), _division_alternatives(graph, marginals, int(division)))
              for division in np.flatnonzero(solution.divisions & (marginals.division < below))]
    return sorted(items, key=lambda item: (item.marginal_probability, item.source.t))


def _link_alternatives(graph: CandidateGraph, marginals: Marginals, link: int) -> tuple[tuple[str, float], ...]:
    source, target = graph.link_source[link], graph.link_target[link]
    found = _ways_out(graph, marginals, source, except_link=link)
    found += [(f"{_where(graph, other)} → it instead", float(marginals.link[index]))  # alone or dividing
              for index, other in _links_into(graph, target) if index != link]
    found.append(("its later end starts a track", float(marginals.appear[target])))
    return _likely(found)


def _division_alternatives(graph: CandidateGraph, marginals: Marginals, division: int
                           ) -> tuple[tuple[str, float], ...]:
    return _likely(_ways_out(graph, marginals, graph.division_mother[division], except_division=division))


def _ways_out(graph: CandidateGraph, marginals: Marginals, source: int, *, except_link: int = -1,
              except_division: int = -1) -> list[tuple[str, float]]:
    """What else the source could do, each with its probability: link alone (not as part of a division), divide,
    or end its track."""
    out = [(f"→ {_where(graph, graph.link_target[index])} instead, without dividing",
            float(marginals.link[index] - marginals.division[_divisions_with(graph, index)].sum()))
           for index in np.flatnonzero(graph.link_source == source) if index != except_link]
    out += [(f"divides into {_where(graph, graph.link_target[a])} and {_where(graph, graph.link_target[b])}",
             float(marginals.division[index]))
            for index in np.flatnonzero(graph.division_mother == source)
            if index != except_division and except_link not in graph.division_links[index]
            for a, b in [graph.division_links[index]]]
    out.append(("the track ends there", float(marginals.disappear[source])))
    return out


def _links_into(graph: CandidateGraph, target: int) -> list[tuple[int, int]]:
    return [(int(index), int(graph.link_source[index])) for index in np.flatnonzero(graph.link_target == target)]


def _divisions_with(graph: CandidateGraph, link: int) -> np.ndarray:
    return np.flatnonzero((graph.division_links == link).any(axis=1))


def _likely(found: list[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted(((text, p) for text, p in found if p >= _SHOWN_FROM), key=lambda item: -item[1]))


def _where(graph: CandidateGraph, index: int) -> str:
    p = graph.positions[index]
    return f"t={p.t} (z, y, x) = ({p.z:g}, {p.y:g}, {p.x:g}) px"
