"""A small run of scripts/interrupt_trials.py: `octrack prepare` killed (SIGKILL) at random moments, twice in one
trial, then run to its end: the cache equals the uninterrupted run's and every file opens. The script's full
run (every command, training killed while checkpoints are written) is in docs/reliability.md."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "interrupt_trials.py"


def load_script():
    spec = importlib.util.spec_from_file_location("interrupt_trials", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look themselves up there)
    spec.loader.exec_module(module)
    return module


def test_killed_prepare_resumes_to_the_same_cache(tmp_path):
    trials = load_script()
    said = []
    counts = trials.run_trials(tmp_path, ("prepare",), trials=1, kills=2, seed=1, report=said.append)
    assert counts.kills + counts.ended_before_the_kill >= 1 and counts.kills >= 1, said
    assert counts.results_equal == 1 and not counts.results_different
    assert counts.files_opened > 0 and not counts.broken_files
    assert "results equal to the uninterrupted run: 1 of 1" in trials.describe(counts)
