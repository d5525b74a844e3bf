"""CSV tracking files: one row per position, `node_id,t,z,y,x,parent_id`.

- Coordinates are pixels; `t` is the time point. `parent_id` is the `node_id` of the position this one is
  linked from (-1 or empty = none); a node that is the parent of two nodes is a division. The parent may lie
  any number of time points earlier (a link that skips time points). A node has at most one parent, so cell
  merges cannot be written (only the link from the first parent is kept).
- Reading also accepts files without `parent_id` (positions only), without `node_id` (then also without
  `parent_id`) and without `z` (2D: z = 0).
- Any other column is position metadata, except columns that start with `link_`: those hold metadata of the link
  from the row's parent to the row's node, named as the column (`link_probability`, `link_confidence`); a link
  key without that prefix gets it in its column name (`present_in_original` → `link_present_in_original`). Files
  of older octrack versions doubled the prefix (`link_link_probability`): read as `link_probability`. Empty
  cells are missing values; numbers are read as int or float, `True`/`False` as booleans, anything else as text.
- The tracker's `marginal_probability` of the link from the parent is the column of that name (as
  OrganoidTracker names it), followed by `error_probability` = 1 − it; reading takes the first and skips the
  second, which follows from it.
- CSV files carry no image offsets (`Tracking.image_offsets`, from .aut files): positions are written as they
  are and read back without offsets.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path
from typing import Any

from octrack.errors import UserError
from octrack.files import write_text_atomic
from octrack.tracking.model import Position, Tracking

COLUMNS = ("node_id", "t", "z", "y", "x", "parent_id")
LINK_PREFIX = "link_"
MARGINAL_PROBABILITY, ERROR_PROBABILITY = "marginal_probability", "error_probability"
_NO_PARENT = ("", "-1", "nan")


def load_csv(path: str | Path) -> Tracking:
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: skips a byte order mark
            return _parse(csv.reader(handle), path)
    except FileNotFoundError as error:
        raise UserError(f"{path}: file not found; check the path") from error
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{path}: not a readable CSV file ({error}); give a CSV file with columns"
                        f" {','.join(COLUMNS)}") from error


def save_csv(tracking: Tracking, path: str | Path) -> None:
    path = Path(path)
    position_keys, link_keys = tracking.position_data_keys(), tracking.link_data_keys()
    clashing = [key for key in position_keys
                if key in (*COLUMNS, MARGINAL_PROBABILITY, ERROR_PROBABILITY) or key.startswith(LINK_PREFIX)]
    if clashing:
        raise UserError(f"{path}: position metadata {clashing[0]!r} would be read back as another column;"
                        f" rename that metadata key")
    ids = node_ids(tracking)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    with_marginal = MARGINAL_PROBABILITY in link_keys
    link_keys = [key for key in link_keys if key != MARGINAL_PROBABILITY]
    writer.writerow([*COLUMNS, *position_keys, *(link_column(key) for key in link_keys),
                     *((MARGINAL_PROBABILITY, ERROR_PROBABILITY) if with_marginal else ())])
    merges = 0
    for position, node_id in ids.items():
        past = tracking.past(position)
        merges += len(past) > 1
        position_data = tracking.position_data(position)
        link_data = tracking.link_data(past[0], position) if past else {}
        writer.writerow([node_id, position.t, position.z, position.y, position.x, ids[past[0]] if past else -1,
                         *(_format(position_data.get(key)) for key in position_keys),
                         *(_format(link_data.get(key)) for key in link_keys),
                         *(_marginal_cells(link_data.get(MARGINAL_PROBABILITY)) if with_marginal else ())])
    if merges:
        warnings.warn(f"{path}: CSV allows one parent per node: {merges} cell merges keep only their first parent",
                      stacklevel=2)
    write_text_atomic(path, text.getvalue())


def _marginal_cells(probability: float | None) -> tuple[str, str]:
    if probability is None:
        return "", ""
    return _format(probability), _format(round(1 - probability, 6))


def link_column(key: str) -> str:
    """The CSV column of a link metadata key: the key itself where it starts with `link_`, else `link_<key>`."""
    return key if key.startswith(LINK_PREFIX) else LINK_PREFIX + key


def node_ids(tracking: Tracking) -> dict[Position, int]:
    """The `node_id` of every position as `save_csv` numbers them: 0, 1, … in `Tracking.positions()` order."""
    return {position: node_id for node_id, position in enumerate(tracking.positions())}


def save_links_csv(tracking: Tracking, path: str | Path, keys: list[str]) -> None:
    """Every link as a row `source_id,target_id` plus its metadata `keys`, with the node ids of `save_csv`
    (so a links file goes with the positions file of the same tracking, e.g. candidate links with their
    probabilities, which `parent_id` cannot hold: a position has several)."""
    ids = node_ids(tracking)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["source_id", "target_id", *keys])
    for source, target in tracking.links():
        data = tracking.link_data(source, target)
        writer.writerow([ids[source], ids[target], *(_format(data.get(key)) for key in keys)])
    write_text_atomic(path, text.getvalue())


def _parse(reader: Any, path: Path) -> Tracking:
    header = [name.strip() for name in next(reader, [])]
    column = _column_indices(header, path)
    metadata_columns = [(name, index) for index, name in enumerate(header) if name not in COLUMNS]
    tracking = Tracking()
    positions_by_id: dict[str, Position] = {}
    children: list[tuple[Position, str, int, dict[str, Any]]] = []
    for line_number, row in enumerate(reader, 2):
        if not row:
            continue
        if len(row) != len(header):
            raise UserError(f"{path}, line {line_number}: {len(row)} values for {len(header)} columns;"
                            f" fix that line")
        position = _position(row, column, path, line_number)
        if position in tracking:
            raise UserError(f"{path}, line {line_number}: position {tuple(position)} is listed twice;"
                            f" remove one of the rows")
        position_data, link_data = _metadata(row, metadata_columns)
        tracking.add_position(position, **position_data)
        if "node_id" in column:
            node_id = _node_key(row[column["node_id"]])
            if node_id in positions_by_id:
                raise UserError(f"{path}, line {line_number}: node_id {node_id} is used twice; make node ids unique")
            positions_by_id[node_id] = position
        parent_id = _node_key(row[column["parent_id"]]) if "parent_id" in column else ""
        if parent_id not in _NO_PARENT:
            children.append((position, parent_id, line_number, link_data))
    _link(tracking, positions_by_id, children, path)
    return tracking


def _column_indices(header: list[str], path: Path) -> dict[str, int]:
    if len(set(header)) != len(header):
        raise UserError(f"{path}: the header names a column twice; give every column its own name")
    column = {name: header.index(name) for name in COLUMNS if name in header}
    missing = [name for name in ("t", "y", "x") if name not in column]
    if "parent_id" in column and "node_id" not in column:
        missing.append("node_id")
    if missing:
        raise UserError(f"{path}: no column {', '.join(missing)} (found {','.join(header) or 'nothing'});"
                        f" give a CSV file with columns {','.join(COLUMNS)}")
    return column


def _position(row: list[str], column: dict[str, int], path: Path, line_number: int) -> Position:
    try:
        z = float(row[column["z"]]) if "z" in column else 0.0
        time_point = float(row[column["t"]])
        if not time_point.is_integer():
            raise ValueError(f"time point {time_point} is not a whole number")
        x, y = float(row[column["x"]]), float(row[column["y"]])
        if not all(math.isfinite(value) for value in (x, y, z)):
            raise ValueError(f"coordinates z, y, x = {z:g}, {y:g}, {x:g} are not all finite numbers")
        return Position(x, y, z, int(time_point))
    except ValueError as error:
        raise UserError(f"{path}, line {line_number}: {error}; fix the t, z, y or x value") from error


def _metadata(row: list[str], metadata_columns: list[tuple[str, int]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Position metadata and metadata of the link from the parent, leaving out empty cells."""
    position_data, link_data = {}, {}
    for name, index in metadata_columns:
        value = _parse_value(row[index])
        if value is None or name == ERROR_PROBABILITY:
            continue
        if name == MARGINAL_PROBABILITY:
            link_data[name] = value
        elif name.startswith(LINK_PREFIX * 2):  # written by older octrack versions
            link_data[name[len(LINK_PREFIX):]] = value
        elif name.startswith(LINK_PREFIX):
            link_data[name] = value
        else:
            position_data[name] = value
    return position_data, link_data


def _link(tracking: Tracking, positions_by_id: dict[str, Position],
          children: list[tuple[Position, str, int, dict[str, Any]]], path: Path) -> None:
    for child, parent_id, line_number, link_data in children:
        parent = positions_by_id.get(parent_id)
        if parent is None:
            raise UserError(f"{path}, line {line_number}: parent_id {parent_id} is no node_id in the file;"
                            f" fix the parent_id (-1 = none)")
        if parent.t >= child.t:
            raise UserError(f"{path}, line {line_number}: the parent (node {parent_id}, t={parent.t}) is not"
                            f" earlier than its child (t={child.t}); fix the parent_id")
        tracking.add_link(parent, child, **link_data)


def _node_key(text: str) -> str:
    """Node ids as text, with numbers normalised so that "3", "3.0" and " 3" are the same node."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text.lower()


def _parse_value(text: str) -> Any:
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        number = float(text)
    except ValueError:
        return text
    return int(text) if number.is_integer() and text.strip().lstrip("+-").isdigit() else number


def _format(value: Any) -> str:
    return "" if value is None else str(value)
