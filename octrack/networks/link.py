"""The link network: a position A at t and a position B at t+1 → the probability that they are the same cell.

The network module that the stages use (see networks/base.py for what it provides); what it shares with the
division network is in classifier.py and classifier_training.py.

Samples: the candidate links of every annotated time point whose next time point is annotated too, by the
one rule of `octrack.candidates` (the pairs that prediction will score and the tracker will choose among),
found among the annotated positions inside the image, in image pixels as prediction sees them. Label: the
link is annotated. Both crops cover the frames of the time window around t (default t and t+1), the first
centred on A, the second on B; the network sees them through one shared encoder, joined with the
displacement B − A in µm. Links from a mother or to a daughter, and links whose length is close to that of
another candidate of the same position (`AMBIGUITY_RATIO`), are drawn more often in training.

A time point's crops are cached once per position (the crops of its positions and those of t+1, over the
frames of t's window) and the pairs index them, since every position belongs to several candidate links.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from octrack.augment import augment_intensity, sample_geometry
from octrack.cache import CacheEntry, file_fingerprint, fingerprint, write_array
from octrack.candidates import DEFAULT_MAX_PARTNERS, candidate_links
from octrack.config import Config, LinkSection, PredictSection
from octrack.dataset import Dataset
from octrack.frames import FrameReader, ModelFrames
from octrack.model_folder import MODEL_FILE, is_organoid_tracker_folder, load_model_folder, stored
from octrack.networks.base import NetworkCache, Predictor
from octrack.networks.classifier import (Classifier, ClassifierCrops, ClassifierSettings, crops_of, cut_crops,
                                         describe_oversampling, oversampling_weights, predict_probabilities,
                                         probability_data, read_cache, warp_crop)
from octrack.networks.organoidtracker.classifiers import link_inputs, load_links
from octrack.networks.organoidtracker.frames import OTFrameReader
from octrack.networks.organoidtracker.settings import OTLinkSettings, pretrained_folder, pretrained_organoid_tracker
from octrack.tracking import Position, Tracking, VoxelSize

NAME = "link"
SECTION = "train_link"
STEP = "links"
FALLBACK = "displacement"  # what the tracker links by without a link model
PLAIN, AMBIGUOUS, NEXT_TO_DIVISION = 0, 1, 2
KIND_NAMES = {PLAIN: "plain", AMBIGUOUS: "of ambiguous length", NEXT_TO_DIVISION: "next to a division"}
AMBIGUITY_RATIO = 1.5  # a candidate is ambiguous when another of its source or target is at most this much longer
AMBIGUOUS_WEIGHT = 2.0
DISPLACEMENT_SCALE_UM = 10.0  # the displacement enters the network in units of this


@dataclass(frozen=True, kw_only=True)
class LinkSettings(ClassifierSettings):
    """settings.json of a link model folder: with the candidate rule it was trained on."""

    NETWORK = NAME
    link_candidate_factor: float = stored()
    max_partners: int = stored(default=DEFAULT_MAX_PARTNERS)
    displacement_scale_um: float = stored(default=DISPLACEMENT_SCALE_UM)


SETTINGS = LinkSettings


def read_section(config: Config) -> LinkSection:
    return config.section_of(LinkSection, SECTION)


def cache(section: LinkSection, datasets: list[Dataset]) -> NetworkCache:
    """Crops as octrack cuts them, or, to train an OrganoidTracker link model further, as it does."""
    organoid_tracker = pretrained_organoid_tracker(section, OTLinkSettings)
    crops = crops_of(section, datasets, organoid_tracker, pretrained_folder(section))
    factor = section.link_candidate_factor
    return NetworkCache(lambda dataset, split, reader: cache_entries(dataset, split, crops, reader, factor),
                        {**crops.attributes(), "link_candidate_factor": factor},
                        lambda path: summary(path, section.division_multiplier),
                        FrameReader if organoid_tracker is None else OTFrameReader)


def training(section: LinkSection, cache_path: Path) -> Any:
    """octrack's link network, or the OrganoidTracker link model that pretrained_model_path names."""
    from octrack.networks.classifier_training import ClassifierTraining
    from octrack.networks.organoidtracker.training import OTClassifierTraining

    organoid_tracker = pretrained_folder(section)
    samples = load_samples(cache_path, section.division_multiplier, section.augment, organoid_tracker is not None)
    if organoid_tracker is not None:
        return OTClassifierTraining(NAME, section, samples, OTLinkSettings, organoid_tracker)
    own = {"link_candidate_factor": float(samples[1]["link_candidate_factor"]), "max_partners": DEFAULT_MAX_PARTNERS,
           "displacement_scale_um": DISPLACEMENT_SCALE_UM}
    return ClassifierTraining(NAME, section, samples, build_model, LinkSettings, own)


@dataclass(frozen=True)
class Candidates:
    """The candidate links between two time points: indices into the positions of t and of t+1."""

    sources: list[Position]  # as given (e.g. the tracking's own positions)
    targets: list[Position]
    pairs: np.ndarray  # (n, 2) int
    displacement_px: np.ndarray  # (n, 3) z, y, x: target − source in image pixels


def find_candidates(sources: list[tuple[Position, Position]], targets: list[tuple[Position, Position]],
                    voxel_size: VoxelSize | None, factor: float) -> Candidates:
    """Candidate links between (position, its image pixels) pairs of t and of t+1, by the rule of
    `candidate_links` applied to the image pixels: the positions as prediction finds them."""
    both = Tracking(voxel_size)
    index_of = {}
    for number, (_, image) in enumerate(sources):
        index_of[both.add_position(image)] = number
    for number, (_, image) in enumerate(targets):
        index_of[both.add_position(image)] = number
    time_point = sources[0][1].t if sources else 0
    links = candidate_links(both, time_point, factor, DEFAULT_MAX_PARTNERS) if sources and targets else []
    pairs = np.array([(index_of[a], index_of[b]) for a, b in links], dtype=np.int64).reshape(-1, 2)
    displacement = np.array([(b.z - a.z, b.y - a.y, b.x - a.x) for a, b in links], dtype=np.float32).reshape(-1, 3)
    return Candidates([position for position, _ in sources], [position for position, _ in targets], pairs,
                      displacement)


def link_kinds(tracking: Tracking, candidates: Candidates, voxel_size: VoxelSize | None) -> np.ndarray:
    """NEXT_TO_DIVISION (from a mother, or to a daughter), else AMBIGUOUS, else PLAIN, per candidate."""
    scale = np.array(voxel_size.zyx_um() if voxel_size else (1.0, 1.0, 1.0))
    lengths = np.linalg.norm(candidates.displacement_px * scale, axis=1)
    kinds = np.full(len(lengths), PLAIN, dtype=np.uint8)
    for number, (source, target) in enumerate(candidates.pairs):
        competing = np.flatnonzero(((candidates.pairs[:, 0] == source) | (candidates.pairs[:, 1] == target))
                                   & (np.arange(len(lengths)) != number))
        if competing.size and np.min(lengths[competing]) <= AMBIGUITY_RATIO * lengths[number] and \
                lengths[number] <= AMBIGUITY_RATIO * np.min(lengths[competing]):
            kinds[number] = AMBIGUOUS
        target_past = tracking.past(candidates.targets[target])
        if tracking.is_division(candidates.sources[source]) or any(tracking.is_division(p) for p in target_past):
            kinds[number] = NEXT_TO_DIVISION
    return kinds


def link_labels(tracking: Tracking, candidates: Candidates) -> np.ndarray:
    return np.array([tracking.has_link(candidates.sources[a], candidates.targets[b]) for a, b in candidates.pairs],
                    dtype=np.uint8)


def sample_time_points(dataset: Dataset) -> list[int]:
    """Annotated time points whose next time point has annotated positions inside the image."""
    return [t for t in dataset.time_points if dataset.annotations_in_image(t) and dataset.annotations_in_image(t + 1)]


def training_candidates(dataset: Dataset, time_point: int, factor: float) -> Candidates:
    return find_candidates(dataset.annotations_in_image(time_point), dataset.annotations_in_image(time_point + 1),
                           dataset.voxel_size, factor)


def cache_entries(dataset: Dataset, split: dict[int, str], crops: ClassifierCrops, reader: FrameReader,
                  factor: float) -> list[CacheEntry]:
    """One entry per time point with candidates: the crops of its positions and of the next time point's,
    the candidate pairs, their labels, kinds and displacements."""
    voxel = dataset.voxel_size.zyx_um() if dataset.voxel_size else None
    entries = []
    for time_point in sample_time_points(dataset):
        candidates = training_candidates(dataset, time_point, factor)
        labels = link_labels(dataset.tracking, candidates)
        kinds = link_kinds(dataset.tracking, candidates, dataset.voxel_size)
        centres = np.array([(image.z, image.y, image.x) for _, image in dataset.annotations_in_image(time_point)
                            + dataset.annotations_in_image(time_point + 1)], dtype=np.float32)
        frames = dataset.window_time_points(time_point, crops.time_window)
        sources = file_fingerprint(dataset.images.source_files(frames))
        entries.append(CacheEntry(
            name=f"dataset_{dataset.config.number}/t{time_point:05d}",
            fingerprint=fingerprint(NAME, sources, frames, dataset.how_read(),
                                    voxel, centres.tolist(), candidates.pairs.tolist(), labels.tolist(),
                                    kinds.tolist(), crops, factor),
            build=_builder(dataset, time_point, centres, candidates, labels, kinds, crops, reader),
            attributes={"split": split[time_point]}))
    return entries


def _builder(dataset: Dataset, time_point: int, centres: np.ndarray, candidates: Candidates, labels: np.ndarray,
             kinds: np.ndarray, crops: ClassifierCrops, reader: FrameReader):
    def build(group: h5py.Group) -> None:
        frames = reader.frames(time_point, crops.time_window)
        regions = crops.regions([frame.data for frame in frames], centres)
        pairs = candidates.pairs + np.array([0, len(candidates.sources)])  # targets follow the sources
        voxel = np.array(dataset.voxel_size.zyx_um() if dataset.voxel_size else [np.nan] * 3)
        write_array(group, "crops", regions.astype(np.float16), chunks=(1, *regions.shape[1:]))
        write_array(group, "positions_zyx", centres, chunks=None)
        write_array(group, "pairs", pairs.astype(np.int32), chunks=None)
        write_array(group, "labels", labels, chunks=None)
        write_array(group, "kinds", kinds, chunks=None)
        write_array(group, "displacement_px", candidates.displacement_px, chunks=None)
        write_array(group, "displacement_um", candidates.displacement_px * voxel.astype(np.float32), chunks=None)
        group.attrs.update({
            "dataset": dataset.config.number, "time_point": time_point, "sources": len(candidates.sources),
            "window_time_points": dataset.window_time_points(time_point, crops.time_window),
            "normalization_low": [frame.low for frame in frames],
            "normalization_high": [frame.high for frame in frames],
            "voxel_size_zyx_um": voxel})
    return build


def displacement_features(displacement_um: np.ndarray) -> np.ndarray:
    """(n, 4): the displacement z, y, x and its length, in units of DISPLACEMENT_SCALE_UM."""
    vectors = np.asarray(displacement_um, dtype=np.float32).reshape(-1, 3)
    length = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.concatenate([vectors, length], axis=1) / np.float32(DISPLACEMENT_SCALE_UM)


# Training samples
@dataclass
class LinkSamples:
    """The cached crops of one split and the candidate pairs that index them."""

    crops: np.ndarray  # float16 (m, z, y, x, frames)
    pairs: np.ndarray  # (n, 2) into crops
    displacement_px: np.ndarray  # (n, 3)
    voxel_zyx_um: np.ndarray  # (n, 3)
    labels: np.ndarray
    kinds: np.ndarray
    weights: np.ndarray
    patch_zyx: tuple[int, int, int]
    augment: Any = None
    organoid_tracker_inputs: bool = False  # to train an OrganoidTracker link model further

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices: np.ndarray, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        """The model's inputs: octrack's (`build_model`), or OrganoidTracker's (`link_inputs`, the displacement
        rounded to whole pixels as OrganoidTracker rounds it)."""
        frames = self.crops.shape[-1]
        first, second, displacements = [], [], []
        for index in indices:
            geometry = sample_geometry(rng, self.augment) if rng is not None else None
            both = np.concatenate([self.crops[self.pairs[index, 0]], self.crops[self.pairs[index, 1]]], axis=-1)
            patch = warp_crop(both, self.patch_zyx, geometry)
            if rng is not None:
                patch = augment_intensity(patch, rng, self.augment)
            vector = self.displacement_px[index] if geometry is None else geometry.warp_vectors(
                self.displacement_px[index])[0]
            first.append(patch[..., :frames])
            second.append(patch[..., frames:])
            displacements.append(vector)
        shape = (0, *self.patch_zyx, frames)
        crops_a = np.stack(first) if first else np.zeros(shape, np.float32)
        crops_b = np.stack(second) if second else np.zeros(shape, np.float32)
        displacement_px = np.array(displacements, dtype=np.float32).reshape(-1, 3)
        if self.organoid_tracker_inputs:
            return link_inputs(crops_a, crops_b, np.round(displacement_px))
        return {"crop_a": crops_a, "crop_b": crops_b,
                "displacement": displacement_features(displacement_px * self.voxel_zyx_um[indices])}


def kind_weights(multiplier: float) -> dict[int, float]:
    return {PLAIN: 1.0, AMBIGUOUS: AMBIGUOUS_WEIGHT, NEXT_TO_DIVISION: multiplier}


def load_samples(cache_path: Path, multiplier: float, augment: Any, organoid_tracker_inputs: bool = False
                 ) -> tuple[dict[str, LinkSamples], dict[str, Any]]:
    def read(group: h5py.Group) -> dict[str, np.ndarray]:
        names = ("crops", "pairs", "displacement_px", "labels", "kinds")
        part = {name: group[name][()] for name in names}
        part["voxel"] = np.tile(np.asarray(group.attrs["voxel_size_zyx_um"], dtype=np.float32), (len(part["labels"]), 1))
        return part

    groups, attributes = read_cache(cache_path, read)
    patch = tuple(int(value) for value in attributes["patch_zyx"])
    splits = {}
    for split, parts in groups.items():
        offsets = np.cumsum([0] + [len(part["crops"]) for part in parts])
        crops = (np.concatenate([part["crops"] for part in parts]) if parts
                 else np.zeros((0, *attributes["extent_zyx"], attributes["frames"]), np.float16))

        def joined(name: str, width: int) -> np.ndarray:
            return np.concatenate([part[name] for part in parts]) if parts else np.zeros((0, width))

        pairs = (np.concatenate([part["pairs"] + offset for part, offset in zip(parts, offsets)]) if parts
                 else np.zeros((0, 2), np.int64))
        kinds = joined("kinds", 0).reshape(-1).astype(np.uint8)
        splits[split] = LinkSamples(crops, pairs, joined("displacement_px", 3), joined("voxel", 3),
                                    joined("labels", 0).reshape(-1).astype(np.uint8), kinds,
                                    oversampling_weights(kinds, kind_weights(multiplier)), patch, augment,
                                    organoid_tracker_inputs)
    return splits, attributes


def build_model(patch_zyx: tuple[int, int, int], frames: int, levels: int, filters: int) -> Any:
    """Crops A and B through one shared encoder, joined with the displacement → P(same cell)."""
    import keras

    from octrack.networks.classifier import encoder, probability_head

    crop_a = keras.Input(shape=(*patch_zyx, frames), name="crop_a")
    crop_b = keras.Input(shape=(*patch_zyx, frames), name="crop_b")
    displacement = keras.Input(shape=(4,), name="displacement")
    shared = encoder((*patch_zyx, frames), levels, filters)
    motion = keras.layers.Dense(4 * filters, activation="relu", name="motion")(displacement)
    joined = keras.layers.Concatenate(name="joined")([shared(crop_a), shared(crop_b), motion])
    return keras.Model([crop_a, crop_b, displacement], probability_head(joined, 4 * filters), name="link_classifier")


def summary(cache_path: Path, multiplier: float) -> str:
    """Per dataset and split: candidates per class and kind, the annotated links they cover, the oversampling."""
    lines = []
    with h5py.File(cache_path, "r") as cache:
        for dataset_name in cache:
            for split in ("train", "validation"):
                groups = [cache[dataset_name][t] for t in cache[dataset_name]
                          if cache[dataset_name][t].attrs["split"] == split]
                if not groups:
                    continue
                labels = np.concatenate([group["labels"][()] for group in groups]).astype(bool)
                kinds = np.concatenate([group["kinds"][()] for group in groups])
                by_kind = ", ".join(f"{np.sum(kinds == kind)} {label}" for kind, label in KIND_NAMES.items())
                line = (f"  link {dataset_name} {split}: {len(labels)} candidates ({labels.sum()} true links, "
                        f"{(~labels).sum()} false; {by_kind})")
                if split == "train":
                    weights = oversampling_weights(kinds, kind_weights(multiplier))
                    line += (f"; links next to a division drawn ×{multiplier:g}, ambiguous ×{AMBIGUOUS_WEIGHT:g}: "
                             f"{describe_oversampling(labels, weights)}")
                lines.append(line)
    return "\n".join(lines)


@dataclass(frozen=True)
class Linker(Classifier):
    """A link model folder, as the predict stage runs it: the candidate links between consecutive time points
    (the rule it was trained on, with the candidate factor of [predict] where set), each with a calibrated
    P(same cell)."""

    candidate_factor: float

    def fingerprint(self) -> str:
        return super().fingerprint(self.candidate_factor)

    def time_points(self, tracking: Tracking, dataset: Dataset) -> list[int]:
        return [t for t in tracking.time_points() if tracking.positions_at(t + 1)]

    def predict(self, frames: ModelFrames, tracking: Tracking, time_point: int) -> np.ndarray:
        sources, targets = tracking.positions_at(time_point), tracking.positions_at(time_point + 1)
        source_zyx, target_zyx = frames.image_zyx(tracking, sources), frames.image_zyx(tracking, targets)
        candidates = find_candidates(
            [(p, Position(x, y, z, time_point)) for p, (z, y, x) in zip(sources, source_zyx)],
            [(p, Position(x, y, z, time_point + 1)) for p, (z, y, x) in zip(targets, target_zyx)],
            frames.voxel_size, self.candidate_factor)
        raw = link_probabilities(self.model, frames.around(time_point), candidates,
                                 np.concatenate([source_zyx, target_zyx]) * frames.factor_zyx, frames.voxel_size,
                                 self.settings.patch_shape)
        return np.column_stack([candidates.pairs, self.calibration(raw)])

    def apply(self, tracking: Tracking, time_point: int, rows: list[list[float]]) -> None:
        """Adds the candidate links of the time point with `link_probability` (calibrated) and `link_penalty`."""
        sources, targets = tracking.positions_at(time_point), tracking.positions_at(time_point + 1)
        for source, target, probability in rows:
            tracking.add_link(sources[int(source)], targets[int(target)], **probability_data("link", probability))


def load(folder: Path, predict: PredictSection) -> Predictor:
    """A link model folder: octrack's, or OrganoidTracker's links model."""
    if is_organoid_tracker_folder(folder):
        return load_links(folder, predict)
    model, settings = load_model_folder(folder, LinkSettings)
    factor = predict.link_candidate_factor or settings.link_candidate_factor
    return Linker(model, settings, folder / MODEL_FILE, float(factor))


def link_probabilities(model: Any, frames: list[np.ndarray], candidates: Candidates, image_zyx: np.ndarray,
                       voxel_size: VoxelSize, patch_zyx: tuple[int, int, int]) -> np.ndarray:
    """The model's uncalibrated P(same cell) of each candidate, given the frames of the time window around t
    (normalised, at the model's voxel size), the sources' pixels followed by the targets' (in those frames),
    and the voxel size of the images (the candidates' displacement is in their pixels)."""
    crops = cut_crops(frames, image_zyx, patch_zyx)
    pairs = candidates.pairs + np.array([0, len(candidates.sources)])
    displacement_um = candidates.displacement_px * np.array(voxel_size.zyx_um(), dtype=np.float32)
    return predict_probabilities(model, {"crop_a": crops[pairs[:, 0]], "crop_b": crops[pairs[:, 1]],
                                         "displacement": displacement_features(displacement_um)})
