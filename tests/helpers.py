"""Helpers for tests: the real data folder, editing ini files, running the CLI."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def real_data(relative: str) -> Path:
    """A path in ../shared/data, or a skip where the real data are absent (e.g. a user's fresh clone)."""
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"real data not found at {path} (only CI and developers have ../shared/data)")
    return path


def set_keys(ini: Path, section: str, **values: object) -> None:
    """Changes keys of an ini file in place, keeping everything else."""
    parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
    parser.read(ini)
    if not parser.has_section(section):
        parser.add_section(section)
    for key, value in values.items():
        if value is None:
            parser.remove_option(section, key)
        else:
            parser.set(section, key, str(value))
    with open(ini, "w") as file:
        parser.write(file)


def octrack(capsys: pytest.CaptureFixture, *arguments: str) -> str:
    """Runs an octrack command in this process; returns what it printed, failing the test on a nonzero exit."""
    from octrack.cli import main

    code = main(list(arguments))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out
