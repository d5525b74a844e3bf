"""An independent cross-check of `octrack evaluate`: the scores of the package traccuracy, where installed,
computed on octrack's own detection matching (so that only the link and division scoring differs)."""

from __future__ import annotations

import warnings
from typing import Any

from octrack.errors import UserError
from octrack.matching import Matching
from octrack.scoring import DIVISION_TOLERANCE
from octrack.tracking.model import Position, Tracking


def traccuracy_scores(ground_truth: Tracking, predicted: Tracking, matching: Matching) -> dict[str, dict[str, Any]]:
    """traccuracy's basic (node and edge) and division metrics, by metric name. Its edge counts equal
    octrack's link counts, and so do its divisions (mother and both daughters); links that skip time points are
    scored with `relax_skips_pred`, as octrack scores them."""
    try:
        import networkx
        from traccuracy import TrackingGraph, run_metrics
        from traccuracy.matchers._base import Matcher
        from traccuracy.metrics import BasicMetrics, DivisionMetrics
    except ImportError as error:
        raise UserError(f"--traccuracy needs the package traccuracy ({error}); install it with "
                        f"`pip install traccuracy`") from error

    true_ids = _node_ids(ground_truth, {p for one in matching.time_points.values() for p in one.true})
    predicted_ids = _node_ids(predicted, {p for one in matching.time_points.values() for p in one.predicted})
    pairs = [(true_ids[true], predicted_ids[guess]) for guess, true in matching.predicted_to_true().items()]

    class GivenMatching(Matcher):
        _matching_type = "one-to-one"

        def _compute_mapping(self, gt_graph: Any, pred_graph: Any) -> list[tuple[int, int]]:
            return pairs

    def graph(tracking: Tracking, ids: dict[Position, int]) -> Any:
        nx_graph = networkx.DiGraph()
        for position, node in ids.items():
            nx_graph.add_node(node, t=position.t, z=position.z, y=position.y, x=position.x)
        nx_graph.add_edges_from((ids[a], ids[b]) for a, b in tracking.links() if a in ids and b in ids)
        return TrackingGraph(nx_graph, location_keys=("z", "y", "x"))

    with warnings.catch_warnings():  # its metrics share one error annotation, and say so
        warnings.simplefilter("ignore", UserWarning)
        results, _ = run_metrics(graph(ground_truth, true_ids), graph(predicted, predicted_ids), GivenMatching(),
                                 [BasicMetrics(), DivisionMetrics(max_frame_buffer=DIVISION_TOLERANCE)],
                                 relax_skips_pred=True)
    return {result["metric"]["name"]: result["results"] for result in results}


def _node_ids(tracking: Tracking, scored: set[Position]) -> dict[Position, int]:
    return {position: node for node, position in enumerate(p for p in tracking.positions() if p in scored)}
