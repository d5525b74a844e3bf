"""File name patterns of time lapses stored as one TIFF file per time point (and channel).

A pattern is a file name with a `{time}` field and optionally a `{channel}` field, e.g.
`nd799xy08t{time:03}c{channel}.tif`. A width, `{time:03}` or `{time:3}`, means zero padding to that
many digits (never padding with spaces), so a pattern names exactly one file per time point and channel.
"""

from __future__ import annotations

import os
import re
import string
from collections import Counter
from pathlib import Path

from octrack.errors import UserError

FIELDS = ("time", "channel")
TIFF_SUFFIXES = (".tif", ".tiff")

_TIME_LABELS = {"t", "time", "frame"}
_CHANNEL_LABELS = {"c", "ch", "channel"}
_DIGIT_RUN = re.compile(r"(\d+)")


class FilePattern:
    """A parsed file name pattern: matches file names and formats them back."""

    def __init__(self, text: str):
        self.text = text
        self._pieces = _parse(text)
        self.fields = {piece[0] for piece in self._pieces if isinstance(piece, tuple)}
        self._regex = re.compile("".join(_piece_regex(piece) for piece in self._pieces))

    def match(self, name: str) -> dict[str, int] | None:
        """The field values of a file name that this pattern produces, or None for any other name."""
        found = self._regex.fullmatch(name)
        return None if found is None else {field: int(value) for field, value in found.groupdict().items()}

    def format(self, **values: int) -> str:
        return "".join(piece if isinstance(piece, str) else f"{values[piece[0]]:0{piece[1]}d}"
                       for piece in self._pieces)


def _parse(text: str) -> list[str | tuple[str, int]]:
    """Literal text and (field, zero-padded width) pieces; UserError for anything but {time}/{channel}."""
    fix = "use {time} (or {time:03} for 001, 002, …) and optionally {channel}"
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise UserError(f"file name pattern '{text}': {error}; {fix}") from None
    pieces: list[str | tuple[str, int]] = []
    for literal, field, spec, conversion in parsed:
        if literal:
            pieces.append(literal)
        if field is None:
            continue
        width = re.fullmatch(r"0?(\d*)", spec or "")
        if field not in FIELDS or conversion or width is None:
            written = field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise UserError(f"file name pattern '{text}' has an unsupported field {{{written}}}; {fix}")
        if any(isinstance(piece, tuple) and piece[0] == field for piece in pieces):
            raise UserError(f"file name pattern '{text}' has {{{field}}} twice; {fix}")
        pieces.append((field, max(int(width.group(1) or 0), 1)))
    return pieces


def _piece_regex(piece: str | tuple[str, int]) -> str:
    if isinstance(piece, str):
        return re.escape(piece)
    field, width = piece
    # Exactly what formatting produces: `width` digits, or more without a leading zero.
    return rf"(?P<{field}>\d{{{width}}}|[1-9]\d{{{width},}})"


def _tiff_names(folder: str | os.PathLike) -> list[str]:
    """Sorted names of the TIFF files in a folder (hidden files left out)."""
    try:
        with os.scandir(folder) as entries:
            return sorted(entry.name for entry in entries if entry.name.lower().endswith(TIFF_SUFFIXES)
                          and not entry.name.startswith(".") and entry.is_file())
    except OSError as error:
        raise UserError(f"cannot list image folder {folder}: {error.strerror}") from None


def guess_pattern(folder: str | os.PathLike) -> tuple[str, list[int]]:
    """The file name pattern of the time lapse in a folder, and the channel numbers in its file names.

    Among the TIFF files, the largest group whose names differ only in their digits is the time lapse.
    A digit run after `c`/`ch`/`channel` is the channel; the time is the run after `t`/`time`/`frame`,
    else the run with most distinct values. Other digits are kept as in the first file (e.g. the stage
    position `xy08`). A lone file with no such run is returned as is: a single multi-dimensional TIFF.
    The channel list is empty when the pattern has no {channel} field.
    """
    names = _tiff_names(folder)
    if not names:
        raise UserError(f"no TIFF files (.tif, .tiff) in {Path(folder)}; give the folder of the TIFF images, or the "
                        f"image file itself (a TIFF, or with octrack[formats] a .nd2, .lif or .czi file or an "
                        f"OME-Zarr folder)")
    split = _largest_group(names)
    runs = range(1, len(split[0]), 2)
    channel_run = next((run for run in runs if _label(split[0][run - 1]) in _CHANNEL_LABELS), None)
    time_run = _time_run(split, [run for run in runs if run != channel_run])
    fields = {run: field for run, field in ((time_run, "time"), (channel_run, "channel")) if run is not None}
    pattern = "".join(_field(field, [parts[index] for parts in split]) if (field := fields.get(index))
                      else part.replace("{", "{{").replace("}", "}}")
                      for index, part in enumerate(split[0]))
    channels = sorted({int(parts[channel_run]) for parts in split}) if channel_run is not None else []
    return pattern, channels


def _largest_group(names: list[str]) -> list[list[str]]:
    """The names (split into text and digit runs) of the largest group with the same text between digits."""
    split = [_DIGIT_RUN.split(name) for name in names]
    skeletons = Counter(tuple(parts[::2]) for parts in split)
    largest = max(skeletons, key=lambda skeleton: skeletons[skeleton])  # first of equals: sorted names
    return [parts for parts in split if tuple(parts[::2]) == largest]


def _label(text: str) -> str:
    """The word just before a digit run: 'nd799xy08t' + '001' → 't'; 'img_' + '000' → 'img'."""
    return re.search(r"([A-Za-z]*)[_\-. ]*$", text).group(1).lower()


def _time_run(split: list[list[str]], runs: list[int]) -> int | None:
    labelled = [run for run in runs if _label(split[0][run - 1]) in _TIME_LABELS]
    if labelled:
        return labelled[0]
    distinct = {run: len({parts[run] for parts in split}) for run in runs}
    varying = [run for run in runs if distinct[run] > 1]
    return max(varying, key=lambda run: distinct[run]) if varying else None


def _field(field: str, values: list[str]) -> str:
    """{field}, or {field:0N} when the numbers are zero-padded to N digits."""
    padded = any(len(value) > 1 and value.startswith("0") for value in values)
    return f"{{{field}:0{min(map(len, values))}}}" if padded else f"{{{field}}}"
