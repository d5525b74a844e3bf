"""What several stages share: the time range of a command line."""

from __future__ import annotations

from octrack.errors import UserError

TimeRange = tuple[int | None, int | None]  # first and last time point, both included; None leaves an end open


def parse_time_range(text: str) -> TimeRange:
    """"A:B" (both included), "A:", ":B" or one time point "T" as (first, last); None leaves an end open."""
    first, colon, last = text.strip().partition(":")
    try:
        bounds = (int(first) if first.strip() else None,
                  (int(last) if last.strip() else None) if colon else int(first))
    except ValueError:
        bounds = None
    if bounds is None or (bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]):
        raise UserError(f"--time-points {text!r}: expected A:B (A <= B, both included), A:, :B or one time "
                        f"point T")
    return bounds


def format_time_range(time_range: TimeRange) -> str:
    first, last = time_range
    return f"{'' if first is None else first}:{'' if last is None else last}"
