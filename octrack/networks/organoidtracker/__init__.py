"""OrganoidTracker's model folders: run them, and train them further, with OrganoidTracker's conventions.

An OrganoidTracker model folder holds `model.keras` and a settings.json such as `{"type": "positions",
"time_window": [0, 1]}` (OrganoidTracker publishes its pretrained models in this form). Wherever octrack takes
a model folder (`detect_model_folder`, `divide_model_folder`, `link_model_folder`, `pretrained_model_path`),
such a folder works: each network module (detect.py, divide.py, link.py) hands it to this package when
`octrack.model_folder.is_organoid_tracker_folder` says so.

* `frames.py`: the frames as OrganoidTracker's predictors prepare them (window, channels, normalisation).
* `settings.py`: the typed settings.json of each type, and OrganoidTracker's Platt calibration.
* `positions.py`, `classifiers.py`: the predictors (octrack.networks.base.Predictor) that run the positions,
  division and link models exactly as OrganoidTracker runs them.
* `training.py`: training OrganoidTracker's architecture further on the user's data with octrack's trainer;
  the result is again a folder of OrganoidTracker's format (with octrack's fields added), which both programs
  load.

The models are loaded without compiling (OrganoidTracker's files name its own loss functions, and may hold a
PyTorch optimizer state that another backend cannot rebuild).
"""
