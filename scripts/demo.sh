#!/usr/bin/env bash
# The main job on the embedded default: installs octrack into ./.venv (first run), makes a synthetic
# 3D+time lapse with ground truth, trains the detection network on it, finds the nuclei in a second
# synthetic time lapse that the network never saw, and scores them against that movie's ground truth.
# Usage: ./scripts/demo.sh [OUTPUT_FOLDER]   (default ./demo_output; about 5 minutes on 2 CPU cores)
source "$(dirname "$0")/setup_env.sh"
OUT="$(mkdir -p "${1:-$ROOT/demo_output}" && cd "${1:-$ROOT/demo_output}" && pwd)"

step() { printf '\n== %s\n' "$*"; }

step "octrack synth: a synthetic 3D+time lapse with ground truth to train on, and a second one to test on"
octrack synth "$OUT/train" --seed 1
octrack synth "$OUT/test" --seed 2 --time-points 5 > /dev/null
cd "$OUT/train"
# A short training that fits a demo; organoid_tracker.ini.example lists every key.
cat >> organoid_tracker.ini <<EOF

[train_detect]
epochs = 30
steps_per_epoch = 40
batch_size = 4
patch_shape = 64, 64, 16
unet_filters = 8
max_training_minutes = 5
EOF
# predict on the test movie: point [predict]'s images_container_1 at it
sed -i "/^\[predict\]/,\$ s#^images_container_1 = images\$#images_container_1 = $OUT/test/images#" organoid_tracker.ini

step "octrack stats: what the ground truth holds"
octrack stats ground_truth.aut

step "octrack prepare: check the [prepare] datasets and cache the training crops"
octrack prepare

step "octrack train-detect: train the nucleus-centre network (resumes if interrupted)"
octrack train-detect

step "octrack predict: find the nuclei in the test movie"
octrack predict

step "octrack evaluate: score them against the test movie's ground truth (matches within 5 µm)"
octrack evaluate --ground-truth "$OUT/test/ground_truth.aut" \
    --predicted training_output/predictions/1/positions.csv --plot "$OUT/detections.png" --images "$OUT/test/images"

step "done"
echo "training movie and its ini:  $OUT/train (images/, ground_truth.aut, organoid_tracker.ini)"
echo "test movie:                  $OUT/test"
echo "model:                       $OUT/train/training_output/model_detect (model.keras, settings.json)"
echo "training logs and curves:    $OUT/train/training_output/training_detect (log.csv, curves.png, tensorboard/)"
echo "predicted positions:         $OUT/train/training_output/predictions/1 (positions.csv, positions.aut)"
echo "plot of one time point:      $OUT/detections.png"
