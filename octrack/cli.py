"""The `octrack` command: parses arguments, calls one function per subcommand, maps errors to exit codes.

Exit codes: 0 success, 2 a user's mistake (one line on stderr), 1 an internal error (with traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

# TensorFlow's C++ log: start-up chatter, and with oneDNN on an AVX2 CPU an "error" line that it falls back to Eigen
# for int32 (harmless); real failures still raise Python exceptions, which octrack reports.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from octrack import __version__  # noqa: E402
from octrack.errors import UserError, is_disk_full  # noqa: E402
from octrack.stages.doctor import choose_backend, quiet_tensorflow_import, report  # noqa: E402

choose_backend()  # before anything imports Keras
quiet_tensorflow_import()

log = logging.getLogger("octrack")

EXIT_OK, EXIT_USER = 0, 2  # anything else escapes as a traceback: exit 1
DEFAULT_CONFIG = "organoid_tracker.ini"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    _configure_logging(arguments.verbose, arguments.quiet)
    if not getattr(arguments, "handler", None):
        parser.print_help()
        return EXIT_USER
    try:
        arguments.handler(arguments)
    except UserError as error:
        print(f"octrack: error: {error}", file=sys.stderr)
        return EXIT_USER
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as error:
        if is_disk_full(error):  # where no atomic write named the file (e.g. a progress file, a log)
            print(f"octrack: error: {getattr(error, 'filename', None) or 'the output folder'}: the disk is full "
                  f"(or over quota); free some space and run again (finished outputs are intact)", file=sys.stderr)
            return EXIT_USER
        if not isinstance(error, OSError) or error.filename is None:
            raise
        print(f"octrack: error: {error.filename}: {error.strerror or error}; check the path and its permissions",
              file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("octrack: interrupted", file=sys.stderr)
        return 130
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    common = _common_options(argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="octrack", parents=[_common_options(None)],
        description="Train and run the nucleus-detection, division and link networks of an "
                    "OrganoidTracker-style cell tracker on 3D+time and 2D+time fluorescence time lapses.")
    parser.add_argument("--version", action=_VersionAction, nargs=0,
                        help="print octrack's version, the Keras backend, the devices it will use and whether "
                             "mixed precision is on, and exit")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, handler, help_text, add_arguments in _COMMANDS:
        command = commands.add_parser(name, parents=[common], help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(handler=handler)
    return parser


class _VersionAction(argparse.Action):
    """--version: the backend and devices as well as the version (importing the backend takes a few seconds)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(report(full=False))
        parser.exit()


def _run_doctor(arguments: argparse.Namespace) -> None:
    print(report(full=True))


def _add_doctor(parser: argparse.ArgumentParser) -> None:
    """No options."""


def _common_options(default: object) -> argparse.ArgumentParser:
    """Options accepted both before and after the subcommand (SUPPRESS keeps the first from being reset)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-v", "--verbose", action="store_true",
                         default=False if default is None else default, help="print more")
    options.add_argument("-q", "--quiet", action="store_true",
                         default=False if default is None else default, help="print only warnings and errors")
    return options


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    logging.getLogger("tensorflow").setLevel(level if verbose else logging.WARNING)  # its notes on devices
    logging.captureWarnings(False)  # install anew: a caller (a test) may have set its own showwarning since
    logging.captureWarnings(True)
    warnings.formatwarning = _one_line_warning


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    """Warnings as one line for the user, without the source line Python shows by default."""
    return f"warning: {message}"


def _add_config(command: argparse.ArgumentParser, what: str = "the ini file") -> None:
    """--config, for the commands that read the ini."""
    command.add_argument("--config", default=DEFAULT_CONFIG, help=f"{what} (default ./{DEFAULT_CONFIG})")


def _add_zyx(command: argparse.ArgumentParser, option: str, help_text: str) -> None:
    """An option of three values z y x (or labelled z=… y=… x=…), parsed by `_zyx`."""
    command.add_argument(option, nargs=3, metavar=("Z", "Y", "X"),
                         help=f"{help_text}, in the order z y x (or labelled, in any order: z=… y=… x=…)")


def _zyx(arguments: argparse.Namespace, option: str, *, whole: bool = False) -> tuple | None:
    from octrack.stages.common import parse_zyx
    values = getattr(arguments, option.lstrip("-").replace("-", "_"))
    return None if values is None else parse_zyx(values, option, whole=whole)


def _voxel_size(arguments: argparse.Namespace) -> object:
    from octrack.tracking import VoxelSize
    zyx = _zyx(arguments, "--voxel-size")
    return None if zyx is None else VoxelSize(zyx[2], zyx[1], zyx[0])


def _add_ctc_options(command: argparse.ArgumentParser, *, ground_truth: bool) -> None:
    """How a Cell Tracking Challenge folder is written: the images it must match and the markers' radius."""
    command.add_argument("--images", help="CTC output: the time lapse the positions belong to (a TIFF file or "
                                          "folder, an OME-Zarr folder, a CTC folder of the same movie): the size, "
                                          "frames and voxel size of the labels")
    _add_zyx(command, "--shape", "CTC output: the image size in pixels instead of --images")
    radius = command.add_mutually_exclusive_group()
    radius.add_argument("--radius-um", type=float, metavar="R",
                        help="CTC output: radius of the ball painted per position, in µm (default 7, "
                             "OrganoidTracker's, where the voxel size is known)")
    radius.add_argument("--radius-px", type=float, metavar="R",
                        help="CTC output: the same in pixels (default 10 where the voxel size is unknown)")
    if ground_truth:
        command.add_argument("--ground-truth", action="store_true",
                             help="CTC output: a ground-truth folder (TRA/man_track.txt, man_trackTTT.tif, small "
                                  "markers) instead of a result (res_track.txt, maskTTT.tif)")


def _geometry(arguments: argparse.Namespace) -> object:
    from octrack.stages.common import image_geometry
    return image_geometry(Path(arguments.images) if arguments.images else None,
                          _zyx(arguments, "--shape", whole=True))


def _say(text: str) -> None:
    """Results for the user: on stdout, silenced by --quiet."""
    if log.isEnabledFor(logging.INFO):
        print(text, flush=True)


# init
def _add_init(command: argparse.ArgumentParser) -> None:
    command.add_argument("--images", help="the time lapse: a folder of TIFF files, one TIFF file, or (with "
                                          "octrack[formats]) an OME-Zarr folder or a .nd2, .lif or .czi file")
    command.add_argument("--tracking", help="annotations (.aut, CSV, or a CTC TRA folder) to train on")
    command.add_argument("--output", default=DEFAULT_CONFIG, help="ini file to write (default %(default)s)")
    command.add_argument("--force", action="store_true", help="overwrite an existing ini file")
    command.add_argument("--format", choices=("octrack", "organoidtracker"), default="octrack",
                         help="octrack: datasets as numbered keys (default); organoidtracker: the training folder "
                              "that OrganoidTracker's GUI writes (its [train_*_network] sections and a "
                              "Dataset.autlist beside the ini)")
    command.add_argument("--example", action="store_true",
                         help="print every key of the ini with its meaning and default, instead")


def _run_init(arguments: argparse.Namespace) -> None:
    from octrack.stages.init import render_example, write_initial_config
    if arguments.example:
        print(render_example(), end="")
        return
    if not arguments.images:
        raise UserError("init needs --images (the time lapse to track); or give --example for every key")
    _say(write_initial_config(Path(arguments.images), Path(arguments.tracking) if arguments.tracking else None,
                              Path(arguments.output), force=arguments.force, form=arguments.format))


# synth
def _add_synth(command: argparse.ArgumentParser) -> None:
    command.add_argument("outdir", help="folder to write the images, ground truth and organoid_tracker.ini to")
    command.add_argument("--2d", dest="two_d", action="store_true", help="2D+time (one z slice)")
    command.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    command.add_argument("--time-points", type=int, default=10, help="number of time points (default %(default)s)")
    _add_zyx(command, "--size", "image size in pixels (default 16 128 128; 1 256 256 with --2d)")
    command.add_argument("--nuclei", type=int, help="nuclei per time point at the start")


def _run_synth(arguments: argparse.Namespace) -> None:
    from octrack.synth import generate
    result = generate(Path(arguments.outdir), two_d=arguments.two_d, seed=arguments.seed,
                      time_points=arguments.time_points,
                      size_xyz=size[::-1] if (size := _zyx(arguments, "--size", whole=True)) else None,
                      nuclei=arguments.nuclei)
    _say(result.describe())


# stats
def _add_stats(command: argparse.ArgumentParser) -> None:
    command.add_argument("path", nargs="?",
                         help="tracking file (.aut, .csv, .geff, CTC folder); without it, the tracking files of the "
                              "[prepare] datasets of --config")
    command.add_argument("--json", action="store_true", help="print one JSON object")
    _add_config(command, "without PATH: the ini whose [prepare] tracking files to report on")


def _run_stats(arguments: argparse.Namespace) -> None:
    from octrack.stages.tracking_files import stats
    print(stats(Path(arguments.path) if arguments.path else None, Path(arguments.config), as_json=arguments.json))


# convert
def _add_convert(command: argparse.ArgumentParser) -> None:
    command.add_argument("input", help="tracking file to read (.aut, .csv, .geff, or a CTC folder)")
    command.add_argument("output", help="file to write: .aut, .csv, .geff, or a folder (Cell Tracking Challenge: "
                                        "needs --images or --shape)")
    _add_zyx(command, "--voxel-size", "voxel size in µm, where the input does not say")
    _add_ctc_options(command, ground_truth=True)


def _run_convert(arguments: argparse.Namespace) -> None:
    from octrack.stages.tracking_files import convert
    _say(convert(Path(arguments.input), Path(arguments.output), voxel_size=_voxel_size(arguments),
                 geometry=_geometry(arguments), radius_um=arguments.radius_um, radius_px=arguments.radius_px,
                 ground_truth=arguments.ground_truth))


# track
def _add_track(command: argparse.ArgumentParser) -> None:
    command.add_argument("positions", help="positions to link (.aut, .csv, .geff, or a CTC folder); their links and "
                                           "the link and division probabilities are used where present")
    command.add_argument("--output", help="tracks to write: .aut, .csv, .geff, or a folder (Cell Tracking Challenge "
                                          "result); default: POSITIONS' name with -tracks.aut")
    _add_zyx(command, "--voxel-size", "voxel size in µm, where the positions file does not say")
    command.add_argument("--temperature", type=float, default=1.5,
                         help="temperature of the links' marginal probabilities (default %(default)s, "
                              "OrganoidTracker's; `octrack calibrate` fits it)")
    _add_ctc_options(command, ground_truth=False)  # the images' size also lets tracks end at their border


def _run_track(arguments: argparse.Namespace) -> None:
    from octrack.stages.track import track_file
    result = track_file(Path(arguments.positions), Path(arguments.output) if arguments.output else None,
                        voxel_size=_voxel_size(arguments), geometry=_geometry(arguments),
                        radius_um=arguments.radius_um, radius_px=arguments.radius_px,
                        temperature=arguments.temperature)
    _say(result)


# calibrate
def _add_calibrate(command: argparse.ArgumentParser) -> None:
    command.add_argument("--ground-truth", required=True,
                         help="tracking with the true positions and links (.aut, .csv, CTC folder)")
    command.add_argument("--positions", required=True,
                         help="positions to track, as predict tracks them (e.g. predictions/1/positions.aut, with "
                              "the link and division probabilities)")
    command.add_argument("--time-points", metavar="A:B",
                         help="fit on the ground truth's time points A to B only, both included")
    distance = command.add_mutually_exclusive_group()
    distance.add_argument("--max-distance-um", type=float, metavar="D",
                          help="furthest a position may lie from a true one to match it, in µm (default 5)")
    distance.add_argument("--max-distance-px", type=float, metavar="D", help="the same in pixels")
    _add_zyx(command, "--voxel-size", "voxel size in µm, where the files do not say")
    command.add_argument("--output", metavar="FOLDER",
                         help="where to write tracker_calibration.json (default: where predict reads it: beside "
                              "the link model of the ini, else its output folder)")
    command.add_argument("--images", help="the time lapse of the positions: tracks start and end more readily at "
                                          "its border, as predict tracks them")
    _add_zyx(command, "--shape", "the image size in pixels instead of --images")
    _add_config(command)


def _run_calibrate(arguments: argparse.Namespace) -> None:
    from octrack.stages.calibrate import calibrate, calibration_folder_of_ini
    positions = Path(arguments.positions)
    output = Path(arguments.output) if arguments.output else calibration_folder_of_ini(Path(arguments.config),
                                                                                       positions)
    _say(calibrate(Path(arguments.ground_truth), positions, output, time_range=arguments.time_points,
                   voxel_size=_voxel_size(arguments), geometry=_geometry(arguments),
                   max_distance_um=arguments.max_distance_um, max_distance_px=arguments.max_distance_px))


# prepare
def _add_prepare(command: argparse.ArgumentParser) -> None:
    command.add_argument("--rebuild", action="store_true", help="rebuild the cache even where it is up to date")
    _add_config(command)


def _run_prepare(arguments: argparse.Namespace) -> None:
    from octrack.config import Config
    from octrack.stages.prepare import prepare
    prepare(Config(arguments.config), rebuild=arguments.rebuild, report=_say)


# train
def _add_train(command: argparse.ArgumentParser) -> None:
    command.add_argument("--epochs", type=int, help="train until this epoch (overrides `epochs` of the ini)")
    command.add_argument("--restart", action="store_true", help="start over instead of resuming")
    _add_config(command)


def _trainer(network: str | None) -> Callable[[argparse.Namespace], None]:
    def run(arguments: argparse.Namespace) -> None:
        from octrack.config import Config
        from octrack.stages.train import run_training
        run_training(Config(arguments.config), [network] if network else None, epochs=arguments.epochs,
                     restart=arguments.restart, report=_say)
    return run


# predict
def _add_predict(command: argparse.ArgumentParser) -> None:
    command.add_argument("--steps",
                         help="comma-separated steps to run: positions, divisions, links, tracks (default: all "
                              "those there are models for; tracks need none)")
    command.add_argument("--time-points", metavar="A:B",
                         help="only time points A to B, both included (A: and :B leave an end open), into "
                              "shard_A-B/ of each predictions folder: a shard for `octrack merge`. Give shards that "
                              "share their boundary time point (0:50, 50:100, ...), where merge joins the tracks")
    _add_config(command)


def _run_predict(arguments: argparse.Namespace) -> None:
    from octrack.config import Config
    from octrack.stages.common import parse_time_range
    from octrack.stages.predict import run_predict
    steps = None if arguments.steps is None else [step.strip() for step in arguments.steps.split(",") if step.strip()]
    time_range = None if arguments.time_points is None else parse_time_range(arguments.time_points)
    run_predict(Config(arguments.config), steps, report=_say, time_range=time_range)


# merge
def _add_merge(command: argparse.ArgumentParser) -> None:
    """The ini names the datasets and their predictions folders."""
    _add_config(command)


def _run_merge(arguments: argparse.Namespace) -> None:
    from octrack.config import Config
    from octrack.stages.merge import run_merge
    run_merge(Config(arguments.config), report=_say)


# evaluate
def _add_evaluate(command: argparse.ArgumentParser) -> None:
    command.add_argument("--ground-truth", required=True,
                         help="tracking with the true positions (.aut, .csv, CTC folder)")
    command.add_argument("--predicted", required=True, help="tracking with the predicted positions")
    distance = command.add_mutually_exclusive_group()
    distance.add_argument("--max-distance-um", type=float, metavar="D",
                          help="furthest a prediction may lie from a true position to match it, in µm (default 5, "
                               "needs a voxel size)")
    distance.add_argument("--max-distance-px", type=float, metavar="D", help="the same in pixels")
    _add_zyx(command, "--voxel-size", "voxel size in µm (default: the ground truth's, else the prediction's)")
    command.add_argument("--time-points", metavar="A:B",
                         help="score only the ground truth's time points A to B, both included "
                              "(A: and :B leave an end open)")
    command.add_argument("--annotated-box", action="store_true",
                         help="ignore predictions outside the box around each time point's true positions "
                              "(for images annotated in part)")
    command.add_argument("--json", action="store_true", help="print one JSON object")
    command.add_argument("--traccuracy", action="store_true",
                         help="also print the scores of the package traccuracy on the same matching (a cross-check)")
    command.add_argument("--plot", metavar="FILE.png",
                         help="draw the true and predicted positions of one time point")
    command.add_argument("--plot-time-point", type=int, metavar="T",
                         help="time point to plot (default: the first scored)")
    command.add_argument("--images",
                         help="with --plot: folder of TIFF files or one TIFF, drawn as maximum projection")
    command.add_argument("--pattern", help="with --images: file name pattern of the folder (default: guessed)")


def _run_evaluate(arguments: argparse.Namespace) -> None:
    from octrack.stages.evaluate import PlotRequest, evaluate_command
    plot = PlotRequest(Path(arguments.plot), arguments.plot_time_point, arguments.images,
                       arguments.pattern) if arguments.plot else None
    print(evaluate_command(Path(arguments.ground_truth), Path(arguments.predicted),
                           max_distance_um=arguments.max_distance_um, max_distance_px=arguments.max_distance_px,
                           voxel_size=_voxel_size(arguments),
                           time_range=arguments.time_points, restrict_to_annotated_box=arguments.annotated_box,
                           traccuracy=arguments.traccuracy, plot=plot, as_json=arguments.json))


# view
def _add_view(command: argparse.ArgumentParser) -> None:
    command.add_argument("tracking", help="tracks to show (.aut, .csv, or a CTC folder), e.g. "
                                          "training_output/predictions/1/tracks.aut")
    command.add_argument("--images", help="the time lapse, drawn as maximum projection (a TIFF file or folder, an "
                                          "OME-Zarr folder, ...); default: the positions on black")
    command.add_argument("--pattern", help="with --images: file name pattern of the folder (default: guessed)")
    command.add_argument("--channels", default="1", help="with --images: channel(s) to sum (default %(default)s)")
    command.add_argument("--output", help="folder to write to (default: TRACKING's name with -view)")
    command.add_argument("--format", choices=("gif", "mp4"), default="gif",
                         help="the movie's format (default %(default)s; mp4 needs octrack[mp4])")
    command.add_argument("--fps", type=float, default=4.0, help="time points per second (default %(default)s)")
    command.add_argument("--lineages", metavar="N,...",
                         help="lineages to plot (and label in the pictures), as numbered in the table view prints; "
                              "default: the 6 with most divisions")
    command.add_argument("--png", metavar="T,...", help="time points to write as PNG (default: first, middle, last)")


def _run_view(arguments: argparse.Namespace) -> None:
    from octrack.stages.view import ViewRequest, view
    _say(view(ViewRequest(
        Path(arguments.tracking), Path(arguments.output) if arguments.output else None,
        Path(arguments.images) if arguments.images else None, arguments.pattern,
        _numbers(arguments.channels, "--channels"), arguments.format, arguments.fps,
        _numbers(arguments.lineages, "--lineages"), _numbers(arguments.png, "--png"))))


def _numbers(text: str | None, option: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"{option} {text}: give whole numbers separated by commas, e.g. 3,7") from None


_COMMANDS = [
    ("doctor", _run_doctor, "what octrack will run on: versions, Keras backend, devices, mixed precision, threads",
     _add_doctor),
    ("init", _run_init, "write a starting organoid_tracker.ini for a folder of images", _add_init),
    ("synth", _run_synth, "make a synthetic time lapse with ground truth and an ini that runs on it", _add_synth),
    ("stats", _run_stats, "positions, time points, tracks and divisions of a tracking file", _add_stats),
    ("convert", _run_convert, "convert tracking files between .aut, CSV, GEFF and Cell Tracking Challenge",
     _add_convert),
    ("track", _run_track, "link positions into tracks with divisions (network probabilities where the file has "
                          "them, else displacement)", _add_track),
    ("prepare", _run_prepare, "check the datasets of [prepare] and cache their training crops as HDF5",
     _add_prepare),
    ("train", _trainer(None), "train every network named in the ini (brings the cache up to date first)",
     _add_train),
    ("train-detect", _trainer("detect"), "train the nucleus-centre detection network", _add_train),
    ("train-divide", _trainer("divide"), "train the division network", _add_train),
    ("train-link", _trainer("link"), "train the link network", _add_train),
    ("predict", _run_predict,
     "run the networks on the time lapses of [predict]: positions, divisions, links, tracks", _add_predict),
    ("merge", _run_merge, "join the shards of `octrack predict --time-points` into one result per [predict] "
                          "dataset", _add_merge),
    ("calibrate", _run_calibrate, "fit the temperature of the links' marginal probabilities on time points with "
                                  "ground truth, for predict", _add_calibrate),
    ("evaluate", _run_evaluate, "score predicted positions and tracks against ground truth",
     _add_evaluate),
    ("view", _run_view, "pictures of tracks: a movie and PNGs of maximum projections with tracks, divisions and "
                        "the links under review, and lineage trees", _add_view),
]


def entry_point() -> None:
    sys.exit(main())
