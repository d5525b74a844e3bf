#!/usr/bin/env bash
# The main job on the embedded default: installs octrack into ./.venv (first run), makes a synthetic
# 3D+time lapse with ground truth, trains the three networks on it (detection, division, link), runs the
# whole pipeline (positions → divisions → links → tracks) on a second synthetic time lapse that the networks
# never saw, and scores positions, links and divisions against that movie's ground truth.
# Usage: ./scripts/demo.sh [OUTPUT_FOLDER]   (default ./demo_output; about 10 minutes on 2 CPU cores)
source "$(dirname "$0")/setup_env.sh"
OUT="$(mkdir -p "${1:-$ROOT/demo_output}" && cd "${1:-$ROOT/demo_output}" && pwd)"

step() { printf '\n== %s\n' "$*"; }

step "octrack synth: a synthetic 3D+time lapse with ground truth to train on, and a second one to test on"
octrack synth "$OUT/train" --seed 1 --time-points 30
octrack synth "$OUT/test" --seed 2 --time-points 10 > /dev/null
cd "$OUT/train"
# Short trainings that fit a demo; organoid_tracker.ini.example lists every key.
cat >> organoid_tracker.ini <<EOF

[train_detect]
epochs = 100
steps_per_epoch = 40
batch_size = 4
patch_shape = 64, 64, 16
unet_filters = 8
max_training_minutes = 4

[train_divide]
epochs = 100
steps_per_epoch = 50
batch_size = 32
encoder_filters = 8
max_training_minutes = 1.5

[train_link]
epochs = 100
steps_per_epoch = 50
batch_size = 32
encoder_filters = 8
max_training_minutes = 1.5
EOF
# predict on the test movie: point [predict]'s images_container_1 at it
sed -i "/^\[predict\]/,\$ s#^images_container_1 = images\$#images_container_1 = $OUT/test/images#" organoid_tracker.ini

step "octrack stats: what the ground truth holds"
octrack stats ground_truth.aut

step "octrack prepare: check the [prepare] datasets and cache the training samples of the three networks"
octrack prepare

step "octrack train: train the detection, division and link networks (each resumes if interrupted)"
octrack train

step "octrack predict: positions, division and link probabilities, and tracks of the test movie"
octrack predict

step "octrack evaluate: score positions, links and divisions against the test movie's ground truth (5 µm)"
octrack evaluate --ground-truth "$OUT/test/ground_truth.aut" \
    --predicted training_output/predictions/1/tracks.aut --plot "$OUT/detections.png" --images "$OUT/test/images"

step "octrack view: a movie and pictures of the tracks, and lineage trees"
octrack view training_output/predictions/1/tracks.aut --images "$OUT/test/images" --output "$OUT/view"

step "done"
echo "training movie and its ini:  $OUT/train (images/, ground_truth.aut, organoid_tracker.ini)"
echo "test movie:                  $OUT/test"
echo "models:                      $OUT/train/training_output/model_{detect,divide,link} (model.keras, settings.json)"
echo "training logs and curves:    $OUT/train/training_output/training_{detect,divide,link} (log.csv, curves.png, tensorboard/)"
echo "predictions:                 $OUT/train/training_output/predictions/1 (positions, links.csv, tracks.aut, tracks.csv, ctc/)"
echo "plot of one time point:      $OUT/detections.png (matching, false and missed links and divisions)"
echo "movie, pictures, lineages:   $OUT/view (movie.gif, tTTT.png, lineages.png)"
echo "look in napari (pip install 'napari[all]'): napari $OUT/train/organoid_tracker.ini"
