"""The train stage: ``repgls.train(config) -> run_dir`` (one process, or many under ``torchrun``).

Modules: ``trainer`` (:class:`Trainer`, :func:`train`), ``data`` (datasets, seeded loaders), ``distributed``
(process group, seeds, RNG state), ``checkpoint`` (atomic checkpoints), ``optim`` (optimiser and schedule),
``validation`` (val predictions and AUC), ``logs`` (metrics.jsonl + TensorBoard), ``run_folder``.
"""

from repgls.training.checkpoint import CHECKPOINT_FILES, load_checkpoint_meta
from repgls.training.trainer import Trainer, train

__all__ = ["CHECKPOINT_FILES", "Trainer", "load_checkpoint_meta", "train"]
