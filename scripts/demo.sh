#!/usr/bin/env bash
# The main job on the embedded default: installs octrack into ./.venv (first run), makes a synthetic
# 3D+time lapse with ground truth, and runs every pipeline step octrack has on it.
# Usage: ./scripts/demo.sh [OUTPUT_FOLDER]   (default ./demo_output)
source "$(dirname "$0")/setup_env.sh"
OUT="$(mkdir -p "${1:-$ROOT/demo_output}" && cd "${1:-$ROOT/demo_output}" && pwd)"

step() { printf '\n== %s\n' "$*"; }

step "octrack synth: a synthetic 3D+time lapse with ground truth"
octrack synth "$OUT" --seed 1
cd "$OUT"

step "octrack stats: what the ground truth holds"
octrack stats ground_truth.aut

step "octrack prepare: check the [prepare] datasets of organoid_tracker.ini and cache the training crops"
octrack prepare

step "done"
echo "images and ground truth:  $OUT/images, $OUT/ground_truth.aut, $OUT/ground_truth.csv"
echo "configuration:            $OUT/organoid_tracker.ini"
echo "training cache (HDF5):    $OUT/training_output/cache/detect.h5"
