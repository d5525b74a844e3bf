"""Synthetic fluorescence time lapses of nuclei with their ground truth: the demo data and the test fixture.

The networks must learn from these movies something that carries over to real organoid data, so they
imitate confocal organoid recordings: anisotropic voxels (0.32 µm in x and y, 2 µm z steps), textured
ellipsoidal nuclei about 8 µm across with soft edges, drift of the whole field plus each nucleus' own
motion, divisions (the mother rounds up and brightens, two smaller daughters appear on either side and
move apart), nuclei entering and leaving the field, an uneven background, dimming with depth, and photon
plus camera noise. Every random number comes from one `numpy.random.default_rng(seed)`, drawn in a fixed
order, so a seed always gives the same bytes.

The simulation runs in micrometres, in a world that is the image plus a margin in x and y. The world is
periodic in x and y: nuclei drift out on one side while others come in on the other, and a nucleus is
outside the image for a while before it wraps around. The tissue expands as its nuclei divide, which keeps
the density in the image constant; the surplus leaves the world out of sight. In z the nuclei stay within
the stack.

The ground truth marks each nucleus where an annotator would: at its centre, or, where the edge of the
image cuts it, at the centre of its visible part. Whether an annotator marks a nucleus that is mostly outside
the image is a matter of taste: those of which less than 40 % is visible (but at least 10 %) are marked
`uncertain` (see octrack/tracking/model.py), which evaluation and training treat as "don't care".
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from octrack.errors import UserError
from octrack.files import atomic_path, write_text_atomic
from octrack.tracking.model import UNCERTAIN, Position, Tracking, VoxelSize

DEFAULT_VOXEL_SIZE = VoxelSize(0.32, 0.32, 2.0, 12.0)
DEFAULT_SIZE_3D = (128, 128, 16)
DEFAULT_SIZE_2D = (256, 256, 1)
DEFAULT_NUCLEI_3D = 30
DEFAULT_NUCLEI_2D = 40
DEFAULT_DIVISION_RATE = 0.02  # divisions per nucleus per time point

IMAGES_FOLDER = "images"
IMAGES_PATTERN = "nuclei_t{time:03}.tif"
GROUND_TRUTH_AUT = "ground_truth.aut"
GROUND_TRUTH_CSV = "ground_truth.csv"
CONFIG_FILE = "organoid_tracker.ini"

# Nuclei (lengths in µm)
NUCLEUS_DIAMETER_UM = 8.0
_SIZE_SPREAD = 0.1  # log-normal sigma of a nucleus' radius
_ELONGATION = (1.0, 1.5)  # range of the ratio of the long to the short axis in xy
_Z_FLATTENING = (0.8, 1.0)  # range of the z semi-axis relative to the radius
_EDGE_UM = 0.4  # width of the soft edge of the nucleus
_MIN_DISTANCE = 0.85  # closest approach of two centres, as a share of the sum of their radii
_PACKING = {False: 0.35, True: 0.5}  # (two_d) share of the image that the keep-out zones may fill
_DAUGHTER_SCALE = 0.8  # linear size of a daughter at birth: about half the mother's volume
_DAUGHTER_GAP = 1.1  # distance between the daughters at birth, in daughter diameters
_GROWTH = 0.1  # share of the remaining growth done per time point
_MIN_CELL_CYCLE = 4  # time points before a daughter can divide again
_MITOTIC_RADIUS = 0.75  # radius of a rounded-up mother relative to its mean radius
_CERTAIN_SHARE = 0.4  # share of a nucleus cut by the image edge that must be visible for it to be annotated
_UNCERTAIN_SHARE = 0.1  # ... and for it to be annotated as uncertain
_TEXTURE_GRID = 24  # points per axis of a nucleus' texture, which spans its own (normalised) frame
_TEXTURE_SPAN = 1.3  # half the side of that grid, in nucleus radii
_TEXTURE_GRAIN = 1.3  # smoothing of the texture in grid points: about 0.6 µm
_TEXTURE_CONTRAST = 0.3
_TEXTURE_CHANGE = 0.3  # share of the texture renewed per time point

# Motion (µm or radians per time point)
_DRIFT_SPEED = (0.3, 0.8)
_DRIFT_CHANGE = 0.1
_OWN_MOTION_XY = 0.5  # standard deviation per axis of a nucleus' own step
_OWN_MOTION_Z = 0.3
_PERSISTENCE = 0.5  # share of its last own step that a nucleus keeps
_SEPARATION_SPEED = 0.5  # daughters moving apart
_TURNING = 0.05
_DIVISION_TILT = 0.3  # z component of a division axis relative to its xy component

# Image formation
_PSF_SIGMA_ZYX_UM = (1.0, 0.25, 0.25)
_BRIGHTNESS_PHOTONS = 150.0
_BRIGHTNESS_SPREAD = 0.35  # log-normal sigma between nuclei
_DAUGHTER_BRIGHTNESS_SPREAD = 0.1
_BACKGROUND_PHOTONS = 30.0
_BACKGROUND_UNEVENNESS = 0.3
_DEPTH_DECAY_UM = 40.0
_CAMERA_OFFSET = 100.0
_CAMERA_GAIN = 2.0  # counts per photon
_READ_NOISE = 4.0  # counts


@dataclass(frozen=True)
class SynthResult:
    """What `generate` wrote, and how much ground truth is in it."""

    outdir: Path
    images_folder: Path
    ground_truth_aut: Path
    ground_truth_csv: Path
    config_file: Path
    two_d: bool
    size_xyz: tuple[int, int, int]
    time_points: int
    voxel_size: VoxelSize
    seed: int
    positions: int
    divisions: int
    tracks: int

    def describe(self) -> str:
        """One paragraph for the CLI: what was written, where, and what to run next."""
        x, y, z = self.size_xyz
        voxel = self.voxel_size
        first, last = (IMAGES_PATTERN.format(time=time_point) for time_point in (0, self.time_points - 1))
        return (f"Wrote a synthetic {'2D' if self.two_d else '3D'} time lapse (seed {self.seed}) to "
                f"{self.outdir}: {self.time_points} time point{'s' * (self.time_points != 1)} of z, y, x = {z}, {y}, {x} voxels of "
                f"{voxel.z_um:g} × {voxel.y_um:g} × {voxel.x_um:g} µm, {voxel.t_minutes:g} min apart, in "
                f"{IMAGES_FOLDER}/ ({first} to {last}); the ground truth ({self.positions} positions, "
                f"{self.divisions} divisions, {self.tracks} tracks) in {GROUND_TRUTH_AUT} and "
                f"{GROUND_TRUTH_CSV}; and {CONFIG_FILE}, which points octrack at both. Next: "
                f"`cd {shlex.quote(str(self.outdir))} && octrack prepare`, then train, predict and evaluate "
                f"from that folder.")


def generate(outdir: str | Path, *, two_d: bool = False, seed: int = 0, time_points: int = 10,
             size_xyz: tuple[int, int, int] | None = None, nuclei: int | None = None,
             voxel_size: VoxelSize = DEFAULT_VOXEL_SIZE,
             division_rate: float = DEFAULT_DIVISION_RATE) -> SynthResult:
    """Writes a synthetic time lapse with ground truth and an organoid_tracker.ini into `outdir`.

    `nuclei` is the number of nuclei per time point to aim for (it drifts with divisions and with nuclei
    entering and leaving). Files already in `outdir` that this does not write are left alone.
    """
    size = tuple(size_xyz) if size_xyz is not None else (DEFAULT_SIZE_2D if two_d else DEFAULT_SIZE_3D)
    if nuclei is None:
        nuclei = DEFAULT_NUCLEI_2D if two_d else DEFAULT_NUCLEI_3D
    _validate(size, time_points, nuclei, voxel_size, two_d, division_rate)
    scene = _Scene((size[0], size[1], size[2]), voxel_size, two_d, time_points)
    outdir = Path(outdir)
    rng = np.random.default_rng(seed)
    tracking = _simulate_and_write_images(scene, nuclei, division_rate, rng, outdir / IMAGES_FOLDER)
    _write_ground_truth(tracking, outdir)
    write_text_atomic(outdir / CONFIG_FILE, _config_text(seed, voxel_size))
    return SynthResult(
        outdir=outdir, images_folder=outdir / IMAGES_FOLDER, ground_truth_aut=outdir / GROUND_TRUTH_AUT,
        ground_truth_csv=outdir / GROUND_TRUTH_CSV, config_file=outdir / CONFIG_FILE, two_d=two_d,
        size_xyz=scene.size_xyz, time_points=time_points, voxel_size=voxel_size, seed=seed,
        positions=len(tracking), divisions=len(tracking.divisions()), tracks=len(tracking.tracks()))


# Arguments
_MAX_TIME_POINTS = 10_000  # a file per time point: more would fill a disk, not make a test movie
_MAX_VOXELS = 2 ** 28  # per time point (512 MiB of uint16)


def _validate(size_xyz: tuple[int, ...], time_points: int, nuclei: int, voxel_size: VoxelSize, two_d: bool,
              division_rate: float) -> None:
    if not 1 <= time_points <= _MAX_TIME_POINTS:
        raise UserError(f"time points = {time_points}: a synthetic time lapse has 1 to {_MAX_TIME_POINTS:,} time "
                        f"points")
    if nuclei < 1:
        raise UserError(f"nuclei = {nuclei}: ask for at least 1 nucleus per time point")
    if not 0 <= division_rate < 1:
        raise UserError(f"division rate = {division_rate:g}: must be at least 0 and below 1 (divisions per "
                        f"nucleus per time point)")
    if min(voxel_size.x_um, voxel_size.y_um, voxel_size.z_um) <= 0 or not (voxel_size.t_minutes or 0) > 0:
        raise UserError(f"voxel size {voxel_size}: sizes and the time between time points must be above 0")
    if len(size_xyz) != 3:
        raise UserError(f"image size {size_xyz}: give three numbers z, y, x")
    shown = ", ".join(map(str, size_xyz[::-1]))
    if two_d and size_xyz[2] != 1:
        raise UserError(f"image size z, y, x = {shown}: a 2D time lapse has z = 1")
    if math.prod(size_xyz) > _MAX_VOXELS:
        raise UserError(f"image size z, y, x = {shown}: more than {_MAX_VOXELS:,} voxels per time point; ask for a "
                        f"smaller image")
    minimum = _minimum_size(voxel_size, two_d)
    if any(size < least for size, least in zip(size_xyz, minimum)):
        raise UserError(f"image size z, y, x = {shown}: too small for a nucleus {NUCLEUS_DIAMETER_UM:g} µm "
                        f"across; use at least {' '.join(map(str, minimum[::-1]))}")
    capacity = _capacity(size_xyz, voxel_size, two_d)
    if nuclei > capacity:
        raise UserError(f"nuclei = {nuclei}: at most {capacity} fit in z, y, x = {shown} without overlapping; "
                        f"ask for fewer or for a larger image")


def _minimum_size(voxel_size: VoxelSize, two_d: bool) -> tuple[int, int, int]:
    """One nucleus diameter in each axis (z = 1 in 2D)."""
    return (math.ceil(NUCLEUS_DIAMETER_UM / voxel_size.x_um), math.ceil(NUCLEUS_DIAMETER_UM / voxel_size.y_um),
            1 if two_d else math.ceil(NUCLEUS_DIAMETER_UM / voxel_size.z_um))


def _capacity(size_xyz: tuple[int, ...], voxel_size: VoxelSize, two_d: bool) -> int:
    """How many nuclei fit in the image with their keep-out zones filling a random-packing share of it."""
    keep_out = _MIN_DISTANCE * NUCLEUS_DIAMETER_UM
    area = size_xyz[0] * voxel_size.x_um * size_xyz[1] * voxel_size.y_um
    if two_d:
        return int(_PACKING[True] * area / (math.pi * keep_out ** 2 / 4))
    depth = (size_xyz[2] - 1) * voxel_size.z_um + keep_out
    return int(_PACKING[False] * area * depth / (math.pi * keep_out ** 3 / 6))


# The scene

@dataclass(frozen=True)
class _Scene:
    """Image geometry and the simulated world around it; lengths in µm, arrays ordered x, y, z."""

    size_xyz: tuple[int, int, int]
    voxel_size: VoxelSize
    two_d: bool
    time_points: int

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return self.size_xyz[2], self.size_xyz[1], self.size_xyz[0]

    @property
    def voxel_xyz(self) -> np.ndarray:
        return np.array([self.voxel_size.x_um, self.voxel_size.y_um, self.voxel_size.z_um])

    @property
    def extent(self) -> np.ndarray:
        """µm from the first to the last voxel centre along x, y, z: where centres count as in the image."""
        return (np.array(self.size_xyz) - 1) * self.voxel_xyz

    @property
    def margin(self) -> float:
        """Room beside the image in x and y: a nucleus leaves it entirely before wrapping around, and there is
        room out of sight where nuclei can leave the world."""
        return 1.5 * NUCLEUS_DIAMETER_UM

    @property
    def period_xy(self) -> np.ndarray:
        return self.extent[:2] + 2 * self.margin

    def world_count(self, nuclei_in_image: int) -> int:
        """Nuclei in the world for `nuclei_in_image` at the same density."""
        ratio = np.prod(self.period_xy) / np.prod(np.maximum(self.extent[:2], self.voxel_xyz[:2]))
        return max(nuclei_in_image, round(nuclei_in_image * float(ratio)))

    def is_hidden(self, centre: np.ndarray) -> bool:
        """Whether a nucleus with this centre is far enough outside the image that none of its light is in it."""
        reach = NUCLEUS_DIAMETER_UM
        return bool(np.any((centre[:2] < -reach) | (centre[:2] > self.extent[:2] + reach)))

    def confine(self, centres: np.ndarray) -> np.ndarray:
        """Wraps x and y around the world and reflects z back into the stack."""
        centres = centres.copy()
        centres[:, :2] = np.mod(centres[:, :2] + self.margin, self.period_xy) - self.margin
        top = self.extent[2]
        centres[:, 2] = np.clip(np.where(centres[:, 2] < 0, -centres[:, 2],
                                         np.where(centres[:, 2] > top, 2 * top - centres[:, 2], centres[:, 2])),
                                0, top)
        return centres

    def offsets(self, centres: np.ndarray) -> np.ndarray:
        """Pairwise vectors between centres, (n, n, 3), taking the shorter way around in x and y."""
        offsets = centres[:, None, :] - centres[None, :, :]
        offsets[..., :2] -= self.period_xy * np.round(offsets[..., :2] / self.period_xy)
        return offsets

    def divides_in_movie(self, last_time_point: float) -> bool:
        """Whether a mother with this last time point divides: its daughters must be in the movie."""
        return last_time_point <= self.time_points - 2

    def depth_dimming(self) -> np.ndarray:
        """Per z slice: the share of the light that comes through, decaying exponentially with depth."""
        return np.exp(-np.arange(self.size_xyz[2]) * self.voxel_size.z_um / _DEPTH_DECAY_UM)


# Nuclei and their motion

@dataclass
class _Nucleus:
    """One nucleus and everything that its motion and its look need."""

    identity: int
    mother: int | None  # identity of the mother; None for the nuclei of the first time point
    born_at: int
    centre: np.ndarray  # x, y, z in µm
    own_step: np.ndarray  # the nucleus' own motion in its last step, µm
    axes: np.ndarray  # adult semi-axes in µm: long and short in xy, then z
    angle: float  # of the long axis, in xy, radians
    growth: float  # linear size relative to the adult size
    brightness: float  # photons at the brightest spot
    texture: np.ndarray  # smooth noise of unit variance over the nucleus' own frame, indexed x, y, z
    divides_after: float  # its last time point before dividing; inf for never

    @property
    def radius(self) -> float:
        return float(np.mean(self.axes)) * self.growth

    def mitosis(self, time_point: int, scene: _Scene) -> float:
        """1 at its last time point, 0.5 the one before, else 0: how far it has rounded up."""
        if not scene.divides_in_movie(self.divides_after):
            return 0.0
        return max(0.0, 1 - (self.divides_after - time_point) / 2)


class _Population:
    """The nuclei in the world and the random choices that move, divide and change them."""

    def __init__(self, scene: _Scene, nuclei_in_image: int, division_rate: float, rng: np.random.Generator):
        self.scene = scene
        self.division_rate = division_rate
        self.rng = rng
        self.drift = self._direction(tilt=0.0) * rng.uniform(*_DRIFT_SPEED)
        self._next_identity = 0
        self.capacity = scene.world_count(nuclei_in_image)
        self.nuclei = [self._new_nucleus(centre, 0, min_age=0)
                       for centre in self._initial_centres(nuclei_in_image)]
        self._separate(iterations=200)

    def _initial_centres(self, nuclei_in_image: int) -> list[np.ndarray]:
        """Exactly `nuclei_in_image` in the image, the rest of the capacity beside it, all at random."""
        scene = self.scene
        centres = [self.rng.uniform(size=3) * scene.extent for _ in range(nuclei_in_image)]
        low = np.array([-scene.margin, -scene.margin, 0.0])
        size = np.array([*scene.period_xy, scene.extent[2]])
        while len(centres) < self.capacity:
            centre = low + self.rng.uniform(size=3) * size
            if np.any((centre[:2] < 0) | (centre[:2] > scene.extent[:2])):
                centres.append(centre)
        return centres

    def step(self, time_point: int) -> None:
        """Moves everything from `time_point` to the next one; mothers that end here become two daughters."""
        self.drift[:2] += self.rng.normal(0.0, _DRIFT_CHANGE, 2)
        following = []
        for nucleus in self.nuclei:
            if nucleus.divides_after == time_point:
                following.extend(self._daughters(nucleus, time_point + 1))
            else:
                self._move(nucleus)
                following.append(nucleus)
        for nucleus in following:
            nucleus.centre = self._flow(nucleus.centre)
        self.nuclei = following
        self._separate(iterations=20)
        self._keep_density()

    def _flow(self, centre: np.ndarray) -> np.ndarray:
        """Drift plus growth of the tissue: it expands about the image's middle in x and y as fast as its nuclei
        multiply, which keeps the density in the image constant."""
        middle = self.scene.extent / 2
        stretch = np.array([1.0, 1.0, 0.0]) * (math.sqrt(1 + self.division_rate) - 1)
        return centre + (centre - middle) * stretch + self.drift

    def _keep_density(self) -> None:
        """The expansion carries the surplus of nuclei out of sight, where they leave the world."""
        while len(self.nuclei) > self.capacity:
            hidden = [index for index, nucleus in enumerate(self.nuclei) if self.scene.is_hidden(nucleus.centre)]
            if not hidden:
                return
            del self.nuclei[hidden[self.rng.integers(len(hidden))]]

    def _move(self, nucleus: _Nucleus) -> None:
        spread = np.array([_OWN_MOTION_XY, _OWN_MOTION_XY, self._z(_OWN_MOTION_Z)])
        # Innovations scaled so that each step's own motion keeps the standard deviation `spread`.
        innovation = self.rng.normal(0.0, 1.0, 3) * spread * math.sqrt(1 - _PERSISTENCE ** 2)
        nucleus.own_step = _PERSISTENCE * nucleus.own_step + innovation
        nucleus.centre = nucleus.centre + nucleus.own_step
        nucleus.angle += self.rng.normal(0.0, _TURNING)
        nucleus.texture = (math.sqrt(1 - _TEXTURE_CHANGE ** 2) * nucleus.texture
                           + _TEXTURE_CHANGE * self._texture())
        nucleus.growth += (1 - nucleus.growth) * _GROWTH

    def _daughters(self, mother: _Nucleus, born_at: int) -> list[_Nucleus]:
        axis = self._direction(tilt=_DIVISION_TILT)
        half_gap = _DAUGHTER_GAP * _DAUGHTER_SCALE * float(np.mean(mother.axes))
        daughters = []
        for sign in (1.0, -1.0):
            daughter = self._new_nucleus(mother.centre + sign * half_gap * axis, born_at, _MIN_CELL_CYCLE,
                                         mother=mother.identity, growth=_DAUGHTER_SCALE)
            daughter.own_step = sign * _SEPARATION_SPEED * axis
            daughter.brightness = mother.brightness * self.rng.lognormal(0.0, _DAUGHTER_BRIGHTNESS_SPREAD)
            daughters.append(daughter)
        return daughters

    def _new_nucleus(self, centre: np.ndarray, born_at: int, min_age: int, *, mother: int | None = None,
                     growth: float = 1.0) -> _Nucleus:
        rng = self.rng
        radius = NUCLEUS_DIAMETER_UM / 2 * rng.lognormal(0.0, _SIZE_SPREAD)
        elongation = math.sqrt(rng.uniform(*_ELONGATION))
        axes = np.array([radius * elongation, radius / elongation, radius * rng.uniform(*_Z_FLATTENING)])
        nucleus = _Nucleus(
            identity=self._next_identity, mother=mother, born_at=born_at, centre=self._flatten(centre),
            own_step=np.zeros(3), axes=axes, angle=rng.uniform(0, math.pi), growth=growth,
            brightness=_BRIGHTNESS_PHOTONS * rng.lognormal(0.0, _BRIGHTNESS_SPREAD),
            texture=self._texture(), divides_after=self._division_time(born_at, min_age))
        self._next_identity += 1
        return nucleus

    def _division_time(self, born_at: int, min_age: int) -> float:
        """Memoryless after `min_age`: about `division_rate` divisions per nucleus per time point."""
        if self.division_rate == 0:
            return math.inf
        return born_at + min_age + int(self.rng.geometric(self.division_rate)) - 1

    def _texture(self) -> np.ndarray:
        """Smooth random chromatin-like texture of unit variance (a 2D grid for 2D movies)."""
        shape = (_TEXTURE_GRID,) * (2 if self.scene.two_d else 3)
        smooth = ndimage.gaussian_filter(self.rng.standard_normal(shape), _TEXTURE_GRAIN, mode="wrap")
        return smooth / (smooth.std() or 1.0)

    def _direction(self, tilt: float) -> np.ndarray:
        """A random unit vector: a random direction in xy plus `tilt` times a normal z component."""
        angle = self.rng.uniform(0, 2 * math.pi)
        vector = np.array([math.cos(angle), math.sin(angle), self._z(self.rng.normal(0.0, tilt))])
        return vector / np.linalg.norm(vector)

    def _z(self, value: float) -> float:
        return 0.0 if self.scene.two_d else value

    def _flatten(self, centre: np.ndarray) -> np.ndarray:
        return np.array([centre[0], centre[1], self._z(centre[2])])

    def _separate(self, iterations: int) -> None:
        """Pushes overlapping nuclei apart (each by half the overlap) until they keep their minimum distance."""
        centres = self.scene.confine(np.array([nucleus.centre for nucleus in self.nuclei]))
        radii = np.array([nucleus.radius for nucleus in self.nuclei])
        minimum = _MIN_DISTANCE * (radii[:, None] + radii[None, :])
        np.fill_diagonal(minimum, 0.0)
        for _ in range(iterations):
            offsets = self.scene.offsets(centres)
            distances = np.maximum(np.linalg.norm(offsets, axis=-1), 1e-6)
            overlap = np.maximum(minimum - distances, 0.0)
            if not overlap.any():
                break
            push = (overlap / (2 * distances))[..., None] * offsets
            centres = self.scene.confine(centres + push.sum(axis=1))
        for nucleus, centre in zip(self.nuclei, centres):
            nucleus.centre = centre


# Ground truth

def _record(tracking: Tracking, visible: dict[int, tuple[np.ndarray, bool]], nuclei: list[_Nucleus],
            time_point: int, previous: dict[int, Position]) -> dict[int, Position]:
    """Adds the visible nuclei (`visible`: identity → centre of the visible part, x, y, z in pixels, and
    whether it is uncertain), linked to themselves (or their mother) one time point back.

    Returns the positions by nucleus identity, for the next call."""
    current = {}
    for nucleus in nuclei:
        if nucleus.identity not in visible:
            continue
        centre, uncertain = visible[nucleus.identity]
        x, y, z = np.round(centre, 2) + 0.0  # + 0.0 turns -0.0 into 0.0
        position = tracking.add_position(Position(x, y, z, time_point), **({UNCERTAIN: True} if uncertain else {}))
        current[nucleus.identity] = position
        earlier_identity = nucleus.identity if nucleus.born_at < time_point else nucleus.mother
        if earlier_identity in previous:
            tracking.add_link(previous[earlier_identity], position)
    return current


def _write_ground_truth(tracking: Tracking, outdir: Path) -> None:
    from octrack.tracking.io import save_tracking

    save_tracking(tracking, outdir / GROUND_TRUTH_AUT)
    save_tracking(tracking, outdir / GROUND_TRUTH_CSV)


# Images

def _simulate_and_write_images(scene: _Scene, nuclei: int, division_rate: float, rng: np.random.Generator,
                               images_folder: Path) -> Tracking:
    """Runs the simulation, writing each time point's image as it goes; returns the ground truth."""
    population = _Population(scene, nuclei, division_rate, rng)
    background = _background(scene, rng)
    _remove_stale_frames(images_folder)
    tracking = Tracking(scene.voxel_size)
    previous: dict[int, Position] = {}
    for time_point in range(scene.time_points):
        frame, visible = _render(population.nuclei, time_point, scene, background, rng)
        previous = _record(tracking, visible, population.nuclei, time_point, previous)
        _write_tiff(images_folder / IMAGES_PATTERN.format(time=time_point), frame, scene)
        if time_point < scene.time_points - 1:
            population.step(time_point)
    return tracking


def _remove_stale_frames(images_folder: Path) -> None:
    """Frames of an earlier, longer movie in the same folder would be read as part of this one."""
    stale = re.compile(re.escape(IMAGES_PATTERN).replace(re.escape("{time:03}"), r"\d{3,}") + "$")
    for path in images_folder.glob("*.tif"):
        if stale.match(path.name):
            path.unlink()


def _background(scene: _Scene, rng: np.random.Generator) -> np.ndarray:
    """Photons per voxel of an uneven, smooth background in y, x (the same at every time point)."""
    _, height, width = scene.shape_zyx
    smooth = ndimage.gaussian_filter(rng.standard_normal((height, width)), sigma=max(height, width) / 6,
                                     mode="wrap")
    smooth /= smooth.std() or 1.0
    return _BACKGROUND_PHOTONS * np.clip(1 + _BACKGROUND_UNEVENNESS * smooth, 0.2, None)


def _render(nuclei: list[_Nucleus], time_point: int, scene: _Scene, background: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, bool]]]:
    """The camera's image, (z, y, x) uint16: nuclei and background, dimmed with depth, with noise; and the
    annotation (centre x, y, z in pixels, uncertain or not) of each nucleus visible enough, by identity."""
    signal = np.zeros(scene.shape_zyx, dtype=np.float32)
    visible = {}
    for nucleus in nuclei:
        annotation = _draw_nucleus(signal, nucleus, nucleus.mitosis(time_point, scene), scene)
        if annotation is not None:
            visible[nucleus.identity] = annotation
    photons = (signal + background) * scene.depth_dimming()[:, None, None]
    counts = (_CAMERA_OFFSET + _CAMERA_GAIN * rng.poisson(photons)
              + _READ_NOISE * rng.standard_normal(scene.shape_zyx, dtype=np.float32))
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16), visible


def _draw_nucleus(signal: np.ndarray, nucleus: _Nucleus, mitosis: float, scene: _Scene
                  ) -> tuple[np.ndarray, bool] | None:
    """Adds the blurred, textured nucleus to `signal`, computing only its bounding box.

    Returns where an annotator would put it (x, y, z in pixels): its centre when all of it is in the image;
    the centre of its visible part when the image edge cuts it, uncertain when less than `_CERTAIN_SHARE`
    of it is visible; None when less than `_UNCERTAIN_SHARE` is."""
    voxel_zyx = scene.voxel_xyz[::-1]
    sigma_um = np.array(_PSF_SIGMA_ZYX_UM) * [not scene.two_d, 1, 1]
    axes, brightness, contrast = _appearance(nucleus, mitosis)
    centre_zyx = nucleus.centre[::-1] / voxel_zyx
    reach = (axes.max() + 3 * sigma_um) / voxel_zyx
    low = np.floor(centre_zyx - reach).astype(int)
    high = np.ceil(centre_zyx + reach).astype(int) + 1
    inside_low = np.maximum(low, 0)
    inside_high = np.minimum(high, scene.shape_zyx)
    if np.any(inside_high <= inside_low):
        return None
    dz, dy, dx = (np.arange(low[axis], high[axis]) * voxel_zyx[axis] - nucleus.centre[2 - axis] for axis in range(3))
    cos, sin = math.cos(nucleus.angle), math.sin(nucleus.angle)
    along = dx[None, None, :] * cos + dy[None, :, None] * sin
    across = dy[None, :, None] * cos - dx[None, None, :] * sin
    up = dz[:, None, None]
    scaled = np.sqrt((along / axes[0]) ** 2 + (across / axes[1]) ** 2 + (up / axes[2]) ** 2)
    body = 0.5 * (1 - np.tanh((scaled - 1) * float(np.mean(axes)) / _EDGE_UM))
    texture = np.clip(1 + contrast * _texture(nucleus, along / axes[0], across / axes[1], up / axes[2]), 0, None)
    box = ndimage.gaussian_filter((brightness * body * texture).astype(np.float32), sigma_um / voxel_zyx,
                                  mode="constant", truncate=3.0)
    source = tuple(slice(a - o, b - o) for a, b, o in zip(inside_low, inside_high, low))
    target = tuple(slice(a, b) for a, b in zip(inside_low, inside_high))
    signal[target] += box[source]
    return _annotated_centre(nucleus, body, source, low, scene)


def _annotated_centre(nucleus: _Nucleus, body: np.ndarray, visible: tuple[slice, ...], low: np.ndarray,
                      scene: _Scene) -> tuple[np.ndarray, bool] | None:
    """See `_draw_nucleus`; `body` is the nucleus' shape in its box, which starts at voxel `low` (z, y, x)."""
    share = body[visible].sum() / max(body.sum(), 1e-12)
    if share < _UNCERTAIN_SHARE:
        return None
    if share > 1 - 1e-3:
        return nucleus.centre / scene.voxel_xyz, False
    grid = np.meshgrid(*(np.arange(part.start, part.stop) for part in visible), indexing="ij")
    weights = body[visible]
    centre_zyx = np.array([(axis * weights).sum() for axis in grid]) / weights.sum() + low
    return centre_zyx[::-1], bool(share < _CERTAIN_SHARE)


def _appearance(nucleus: _Nucleus, mitosis: float) -> tuple[np.ndarray, float, float]:
    """Semi-axes, brightness and texture contrast; a mother rounds up, condenses and brightens."""
    grown = nucleus.axes * nucleus.growth
    rounded = np.full(3, _MITOTIC_RADIUS * nucleus.radius)
    axes = (1 - mitosis) * grown + mitosis * rounded
    return axes, nucleus.brightness * (1 + mitosis), _TEXTURE_CONTRAST * (1 + 0.5 * mitosis)


def _texture(nucleus: _Nucleus, along: np.ndarray, across: np.ndarray, up: np.ndarray) -> np.ndarray:
    """The nucleus' texture at the given points of its own frame (in radii), so that the texture turns, moves
    and grows with the nucleus and changes only slowly between time points."""
    frame = (along, across) if nucleus.texture.ndim == 2 else (along, across, up)
    shape = np.broadcast_shapes(along.shape, across.shape, up.shape)
    scale = (_TEXTURE_GRID - 1) / (2 * _TEXTURE_SPAN)
    indices = [np.broadcast_to((coordinate + _TEXTURE_SPAN) * scale, shape) for coordinate in frame]
    return ndimage.map_coordinates(nucleus.texture, indices, order=1, mode="nearest")


def _write_tiff(path: Path, frame: np.ndarray, scene: _Scene) -> None:
    """An ImageJ TIFF (ZYX, or YX in 2D) that carries the voxel size in µm."""
    voxel = scene.voxel_size
    metadata = {"axes": "YX", "unit": "um"} if scene.two_d else {"axes": "ZYX", "spacing": voxel.z_um, "unit": "um"}
    with atomic_path(path) as temporary:
        tifffile.imwrite(temporary, frame[0] if scene.two_d else frame, imagej=True,
                         resolution=(1 / voxel.x_um, 1 / voxel.y_um), metadata=metadata)


# Settings

def _config_text(seed: int, voxel_size: VoxelSize) -> str:
    """organoid_tracker.ini for the movie; paths are relative to its folder."""
    return (f"# Synthetic time lapse made by `octrack synth --seed {seed} ...`; octrack prepare/train/predict/"
            f"evaluate run from this folder.\n"
            "[DEFAULTS]\n"
            "output_folder = training_output\n"
            "cache_folder = training_output/cache\n"
            "\n"
            "[prepare]\n"
            + _dataset_lines(voxel_size, tracking_file=GROUND_TRUTH_AUT)
            + "\n"
            "[predict]\n"
            + _dataset_lines(voxel_size, tracking_file=None)
            + "predictions_folder_1 = training_output/predictions/1\n")


def _dataset_lines(voxel_size: VoxelSize, tracking_file: str | None) -> str:
    lines = [f"images_container_1 = {IMAGES_FOLDER}", f"images_pattern_1 = {IMAGES_PATTERN}"]
    if tracking_file is not None:
        lines.append(f"tracking_file_1 = {tracking_file}")
    lines += [f"pixel_size_x_um_1 = {float(voxel_size.x_um)!r}", f"pixel_size_y_um_1 = {float(voxel_size.y_um)!r}",
              f"pixel_size_z_um_1 = {float(voxel_size.z_um)!r}",
              f"time_point_duration_m_1 = {float(voxel_size.t_minutes or 0)!r}"]
    return "".join(line + "\n" for line in lines)
