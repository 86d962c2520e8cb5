"""facegan: train, sample and evaluate GANs that generate faces.

The Python API (the command line calls the same functions)::

    import facegan

    cfg = facegan.apply_overrides(facegan.get_preset("demo"), {"train.steps": 200})
    run = facegan.train(cfg, "runs/demo")               # the run folder (Path)
    lg = facegan.load_generator(run)                     # .generator, .labels, .config, .step
    z = facegan.latents(16, lg.generator.latent_dim, seed=0)
    images = facegan.generate(lg.generator, z, lg.labels.draw(16, seed=0))  # uint8 (16, 3, R, R)
    facegan.save_grid(images, "grid.png")
    facegan.evaluate(run, data="builtin", metrics=("fid",))  # needs facegan[metrics]; CPU minutes

Every generator is ``G(z, c)`` with ``c`` float (N, K), K = 0 without labels; every critic
returns ``(score, aux or None)``. ``facegan.start_run`` gives the :class:`Trainer` before its
first step, for a loop of your own (``trainer.train_step()``, ``trainer.save()``), which
``facegan.end_run(trainer)`` ends (or ``with facegan.start_run(...) as trainer:``). ``facegan.project(run, ["photo.jpg"])`` puts real photos
into the latent space (:mod:`facegan.projection`).
"""

__version__ = "0.1.0"

from .config import Config, apply_overrides, get_preset
from .errors import UserError
from .labels import UNCONDITIONAL, Condition, LabelSpec, parse_condition
from .metrics.evaluate import evaluate_checkpoint as evaluate
from .projection import Projection, load_latent, project
from .runtime import resolve_device, resolve_precision
from .sampling import LoadedGenerator, generate, generate_images, latents, load_generator, save_grid
from .train import Trainer, end_run, start_run
from .train import train as _train

# Bound last: importing the facegan.train package above sets the attribute ``train`` of this
# package to that module; the public name is the function (the package stays importable as
# ``from facegan.train import ...``).
train = _train

__all__ = [
    "UNCONDITIONAL",
    "Condition",
    "Config",
    "LabelSpec",
    "LoadedGenerator",
    "Projection",
    "Trainer",
    "UserError",
    "__version__",
    "apply_overrides",
    "end_run",
    "evaluate",
    "generate",
    "generate_images",
    "get_preset",
    "latents",
    "load_generator",
    "load_latent",
    "parse_condition",
    "project",
    "resolve_device",
    "resolve_precision",
    "save_grid",
    "start_run",
    "train",
]
