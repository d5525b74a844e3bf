"""Training on several devices: the `distribution` key (none | mirrored | multi_worker).

Data parallel in every case: each device (replica) holds a copy of the model, each step's batch of
`batch_size` samples is split among the replicas (`batch_size / replicas` each), and their gradients are
averaged, so the weights stay the same everywhere. Batch normalisation computes its statistics over each
replica's own samples on TensorFlow, over the whole batch on JAX (one program spanning every device).
`learning_rate` is used as it is: whoever raises `batch_size` to feed more devices should usually raise it in
proportion (the linear scaling rule), a choice left to the ini.

- mirrored, TensorFlow backend: `tf.distribute.MirroredStrategy` over every GPU of this machine (over its
  logical CPUs where it has no GPU); JAX backend: `keras.distribution.DataParallel` over every device.
- multi_worker, TensorFlow backend: `tf.distribute.MultiWorkerMirroredStrategy`, which reads the cluster and
  this process's place in it from the standard `TF_CONFIG` environment variable. Every worker reads the same
  output folder (to resume); only the chief writes there, the others write to a temporary folder deleted
  afterwards (the usual TensorFlow pattern: every worker runs the same saving code).

The torch backend has no distribution here: it needs TensorFlow or JAX.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from octrack.errors import UserError


@dataclass(frozen=True)
class Placement:
    """Where training runs: how many replicas share each batch, and whether this process writes files."""

    distribution: str
    replicas: int = 1
    is_chief: bool = True
    scope: Callable[[], AbstractContextManager] = contextlib.nullcontext
    any_worker: Callable[[bool], bool] = bool  # True on every worker when it is True on one

    @contextlib.contextmanager
    def writable_folder(self, folder: Path) -> Iterator[Path]:
        """`folder` on the chief; on other workers a temporary folder, deleted afterwards."""
        if self.is_chief:
            yield folder
            return
        with tempfile.TemporaryDirectory(prefix="octrack-worker-") as scratch:
            yield Path(scratch)

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.replicas:
            raise UserError(f"batch_size = {batch_size}: does not split evenly among the {self.replicas} replicas "
                            f"of distribution = {self.distribution}; use a multiple of {self.replicas} "
                            f"(batch_size is the whole step's batch, batch_size / {self.replicas} per replica)")


def place(distribution: str) -> Placement:
    """The placement for the ini's `distribution`, or a UserError where this backend cannot do it."""
    if distribution == "none":
        return Placement(distribution)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _mirrored_tensorflow() if distribution == "mirrored" else _multi_worker_tensorflow()
    if backend == "jax" and distribution == "mirrored":
        data_parallel = keras.distribution.DataParallel()
        return Placement(distribution, len(keras.distribution.list_devices()), scope=data_parallel.scope)
    if backend == "jax":
        raise UserError("distribution = multi_worker: needs the tensorflow backend (KERAS_BACKEND=tensorflow); "
                        "with jax use distribution = mirrored on one machine")
    raise UserError(f"distribution = {distribution}: needs the tensorflow or jax backend, not {backend}; set "
                    f"KERAS_BACKEND=tensorflow (or jax), or distribution = none")


@functools.cache  # one strategy per process: a second one would reuse the first one's collective operations
def _mirrored_tensorflow() -> Placement:
    import tensorflow as tf

    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    strategy = tf.distribute.MirroredStrategy([device.name for device in devices])
    return Placement("mirrored", strategy.num_replicas_in_sync, scope=strategy.scope)


@functools.cache  # one strategy per process: TensorFlow sets up its collective operations once
def _multi_worker_tensorflow() -> Placement:
    _check_tf_config()
    import tensorflow as tf

    class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """Fills two gaps of Keras 3 (3.15) with this strategy (keras-team/keras#20585): before fitting, Keras
        reduces a whole (x, y) batch at once, and after each step every scalar metric along its axis 0."""

        def reduce(self, reduce_op, value, axis=None):
            def reduce_leaf(leaf):
                scalar = self.experimental_local_results(leaf)[0].shape.rank == 0
                return super(MultiWorkerStrategy, self).reduce(reduce_op, leaf, None if scalar else axis)

            return tf.nest.map_structure(reduce_leaf, value)

    strategy = MultiWorkerStrategy()
    resolver = strategy.cluster_resolver
    is_chief = (resolver.task_type in (None, "chief")
                or (resolver.task_type == "worker" and resolver.task_id == 0
                    and "chief" not in resolver.cluster_spec().as_dict()))

    @tf.function
    def votes(flag: Any) -> Any:
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: flag), axis=None)

    def any_worker(flag: bool) -> bool:
        return float(votes(tf.constant(float(flag)))) > 0

    return Placement("multi_worker", strategy.num_replicas_in_sync, is_chief, strategy.scope, any_worker)


def _check_tf_config() -> None:
    text = os.environ.get("TF_CONFIG", "")
    example = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
               '"index": 0}}, index 0 on the first machine, 1 on the second')
    if not text.strip():
        raise UserError(f"distribution = multi_worker: the TF_CONFIG environment variable is not set; set it on "
                        f"every worker ({example})")
    try:
        config = json.loads(text)
    except ValueError:
        config = None
    task = config.get("task") if isinstance(config, dict) else None
    if not (isinstance(task, dict) and {"type", "index"} <= set(task) and isinstance(config.get("cluster"), dict)):
        raise UserError(f"TF_CONFIG: not JSON with a cluster and this worker's task ({example})")
