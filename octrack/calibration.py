"""Scores and calibration of a classifier's probabilities, in numpy.

Platt scaling maps a network's output p to sigmoid(a · logit(p) + b), with a and b fitted by maximum
likelihood (Newton's method) to the labels of held-out samples, using Platt's smoothed targets
((N₊ + 1) / (N₊ + 2) and 1 / (N₋ + 2)) so that perfectly separated data do not drive a to infinity.
The scores follow their usual definitions (those of scikit-learn): ROC AUC as the probability that a random
positive scores above a random negative (ties count half), average precision as Σ (Rₙ − Rₙ₋₁) Pₙ over the
distinct thresholds, and the expected calibration error as the count-weighted mean of |mean predicted −
observed rate| over 10 equal-width bins of the predicted probability.

The tracker's temperature (octrack/linking/marginals.py) is fitted the same way, by maximum likelihood of the
chosen links being right or wrong (`fit_temperature`, a bounded search over log T).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from octrack.errors import UserError
from octrack.files import write_text_atomic

EPSILON = 1e-7
BINS = 10


@dataclass(frozen=True)
class Platt:
    """p ↦ sigmoid(a · logit(p) + b); the identity is a = 1, b = 0."""

    a: float = 1.0
    b: float = 0.0

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        return sigmoid(self.a * logit(probabilities) + self.b)

    def to_json(self) -> dict[str, float | str]:
        return {"method": "platt", "a": self.a, "b": self.b}

    @staticmethod
    def from_json(values: dict[str, float] | None) -> Platt:
        return Platt(float(values["a"]), float(values["b"])) if values else Platt()


def logit(probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p) - np.log1p(-p)


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(values, dtype=np.float64)))


def penalty(probabilities: np.ndarray) -> np.ndarray:
    """OrganoidTracker's penalty: −log10 of the odds p / (1 − p)."""
    return -logit(probabilities) / np.log(10)


def fit_platt(probabilities: np.ndarray, labels: np.ndarray, iterations: int = 100) -> Platt:
    """The Platt scaling that best fits `labels` (0/1); the identity where a class is missing."""
    labels = np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return Platt()
    targets = np.where(labels, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    features = np.stack([logit(probabilities), np.ones(len(labels))], axis=1)
    theta = np.array([1.0, 0.0])
    loss = _platt_loss(theta, features, targets)
    for _ in range(iterations):
        p = sigmoid(features @ theta)
        gradient = features.T @ (p - targets)
        hessian = (features * (p * (1 - p))[:, None]).T @ features + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-8 and _platt_loss(theta - scale * step, features, targets) > loss:
            scale /= 2
        new_theta = theta - scale * step
        new_loss = _platt_loss(new_theta, features, targets)
        converged = loss - new_loss < 1e-12 * max(1.0, abs(loss))
        theta, loss = new_theta, min(loss, new_loss)
        if converged:
            break
    return Platt(float(theta[0]), float(theta[1]))


def _platt_loss(theta: np.ndarray, features: np.ndarray, targets: np.ndarray) -> float:
    z = features @ theta
    return float(np.sum(np.logaddexp(0, z) - targets * z))


TEMPERATURE_RANGE = (0.05, 50.0)
TRACKER_CALIBRATION_FILE = "tracker_calibration.json"


@dataclass(frozen=True)
class TrackerCalibration:
    """The tracker's temperature as `octrack calibrate` fitted it, and on what."""

    temperature: float
    links: int  # chosen links with ground truth that it was fitted on
    wrong_links: int
    costs_from: str  # what the tracker's costs came from (a temperature fits those costs only)


def save_tracker_calibration(folder: Path, calibration: TrackerCalibration) -> Path:
    path = folder / TRACKER_CALIBRATION_FILE
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(asdict(calibration), indent=2) + "\n")
    return path


def load_tracker_calibration(folder: Path) -> TrackerCalibration | None:
    """The calibration in `folder`, None where there is none."""
    path = folder / TRACKER_CALIBRATION_FILE
    if not path.exists():
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        calibration = TrackerCalibration(float(values["temperature"]), int(values["links"]),
                                         int(values["wrong_links"]), str(values["costs_from"]))
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path}: not a valid tracker calibration ({error}); run `octrack calibrate` again, or "
                        f"delete it to use the default temperature") from None
    if not calibration.temperature > 0:
        raise UserError(f"{path}: temperature {calibration.temperature} must be above 0; run `octrack calibrate` "
                        f"again")
    return calibration


def fit_temperature(probabilities_at: Callable[[float], np.ndarray], correct: np.ndarray) -> float | None:
    """The temperature T whose probabilities `probabilities_at(T)` (of the chosen links) best explain which of
    them are `correct`: maximum likelihood over log T within TEMPERATURE_RANGE. None where all are right or all
    wrong (the likelihood then has no maximum)."""
    from scipy.optimize import minimize_scalar

    correct = np.asarray(correct, dtype=bool)
    if correct.all() or not correct.any():
        return None

    def negative_log_likelihood(log_temperature: float) -> float:
        p = np.clip(probabilities_at(float(np.exp(log_temperature))), EPSILON, 1 - EPSILON)
        return -float(np.sum(np.where(correct, np.log(p), np.log1p(-p))))

    low, high = np.log(TEMPERATURE_RANGE)
    result = minimize_scalar(negative_log_likelihood, bounds=(low, high), method="bounded",
                             options={"xatol": 1e-3})
    return float(np.exp(result.x))


def roc_auc(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U with tied scores counted half); nan with one class only."""
    labels = np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _rank(probabilities)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Σ (Rₙ − Rₙ₋₁) Pₙ over the distinct thresholds, highest first; nan without positives."""
    labels = np.asarray(labels, dtype=bool)
    if not labels.any():
        return float("nan")
    order = np.argsort(-np.asarray(probabilities, dtype=np.float64), kind="stable")
    scores, sorted_labels = np.asarray(probabilities)[order], labels[order]
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    true_positives = np.cumsum(sorted_labels)[last_of_tie]
    predicted = (np.arange(len(scores)) + 1)[last_of_tie]
    recall = true_positives / labels.sum()
    precision = true_positives / predicted
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def precision_recall(probabilities: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    """Precision and recall of `probability >= threshold` (precision 1 when nothing is predicted)."""
    labels = np.asarray(labels, dtype=bool)
    predicted = np.asarray(probabilities) >= threshold
    true_positives = int(np.sum(predicted & labels))
    precision = true_positives / predicted.sum() if predicted.any() else 1.0
    recall = true_positives / labels.sum() if labels.any() else float("nan")
    return float(precision), float(recall)


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    count: int
    mean_predicted: float
    observed_rate: float


def reliability_table(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> list[ReliabilityBin]:
    """Per equal-width bin of the predicted probability: how many, mean prediction, observed positive rate."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    index = np.minimum((probabilities * bins).astype(int), bins - 1)
    table = []
    for number in range(bins):
        inside = index == number
        count = int(inside.sum())
        table.append(ReliabilityBin(number / bins, (number + 1) / bins, count,
                                    float(probabilities[inside].mean()) if count else float("nan"),
                                    float(labels[inside].mean()) if count else float("nan")))
    return table


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    table = reliability_table(probabilities, labels, bins)
    total = sum(row.count for row in table)
    return float(sum(row.count * abs(row.mean_predicted - row.observed_rate) for row in table if row.count) / total)


def cross_fitted_calibration_error(probabilities: np.ndarray, labels: np.ndarray, folds: int = 5,
                                   seed: int = 0) -> float:
    """The ECE of Platt scaling fitted on the other folds (an estimate free of the in-sample optimism of
    fitting and scoring on the same samples)."""
    probabilities, labels = np.asarray(probabilities), np.asarray(labels, dtype=bool)
    fold = np.random.default_rng(seed).permutation(len(labels)) % folds
    calibrated = np.empty(len(labels))
    for number in range(folds):
        held_out = fold == number
        calibrated[held_out] = fit_platt(probabilities[~held_out], labels[~held_out])(probabilities[held_out])
    return expected_calibration_error(calibrated, labels)


def classifier_scores(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float | int]:
    precision, recall = precision_recall(probabilities, labels)
    labels = np.asarray(labels, dtype=bool)
    return {"samples": int(len(labels)), "positives": int(labels.sum()), "precision": precision,
            "recall": recall, "roc_auc": roc_auc(probabilities, labels),
            "average_precision": average_precision(probabilities, labels),
            "ece": expected_calibration_error(probabilities, labels)}


def format_reliability(before: list[ReliabilityBin], after: list[ReliabilityBin]) -> str:
    """The reliability tables before and after calibration side by side, one line per bin."""
    lines = ["  bin        | before: n  predicted observed | after: n  predicted observed"]
    for old, new in zip(before, after):
        lines.append(f"  {old.low:.1f}–{old.high:.1f}    | {_cells(old)} | {_cells(new)}")
    return "\n".join(lines)


def _cells(row: ReliabilityBin) -> str:
    if not row.count:
        return f"{0:>9}          –        –"
    return f"{row.count:>9} {row.mean_predicted:>10.3f} {row.observed_rate:>8.3f}"


def _rank(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their mean rank (scipy.stats.rankdata, imported only when scores are computed:
    scipy.stats alone takes a second to import)."""
    from scipy.stats import rankdata

    return rankdata(values)
