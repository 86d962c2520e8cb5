"""Training: the :class:`Trainer` (the loop), the builder that turns a config into one, and
:func:`start_run` / :func:`train`, the one way a run starts (new, resumed, or the demo).

``trainer = start_run(cfg, "runs/a")`` then ``trainer.train(cfg.train.steps)``, or in one call
``train(cfg, "runs/a")``; ``build_trainer(cfg, data, run_dir)`` builds in memory without the
run-folder bookkeeping (tests, benchmarks, profiling).
"""

from .build import build_optimizers, build_trainer, clamp_batch_size, resume_trainer
from .start import end_run, start_run, train
from .trainer import Trainer, TrainingDiverged, TrainingInterrupted

__all__ = [
           "Trainer",
           "TrainingDiverged",
           "TrainingInterrupted",
           "build_optimizers",
           "build_trainer",
           "clamp_batch_size",
           "end_run",
           "resume_trainer",
           "start_run",
           "train",
]
