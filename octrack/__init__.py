"""octrack: train and run the three networks of an OrganoidTracker-style cell tracker."""

import os

__version__ = "0.1.0"

# TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512 VNNI or newer; on others (an
# AVX2 AMD EPYC, most laptops) it falls back to its own convolutions, 2 to 3.4 times slower here (docs/benchmarks.md,
# issue 15). Set before anything imports TensorFlow; a user's own TF_ENABLE_ONEDNN_OPTS wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
