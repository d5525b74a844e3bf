"""The time window of a network: the frames around time point t that one sample or prediction sees."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TimeWindow:
    """`before` frames before t, t itself and `after` frames after it; both are counts (0 = none)."""

    before: int
    after: int

    @property
    def size(self) -> int:
        """Frames in the window: the channels of a network's input."""
        return self.before + 1 + self.after

    def time_points(self, time_point: int) -> list[int]:
        """The time points of the window around `time_point` (some may not exist in a movie)."""
        return list(range(time_point - self.before, time_point + self.after + 1))

    def to_json(self) -> list[int]:
        return [self.before, self.after]

    @staticmethod
    def from_json(values: list[int]) -> TimeWindow:
        before, after = values
        return TimeWindow(int(before), int(after))
