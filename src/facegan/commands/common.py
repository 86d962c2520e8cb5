"""What the commands share: exit statuses, output-path checks, rank-0 printing."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

from ..errors import UserError
from ..files import can_create_files_in, make_out_dir

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


def is_main_process() -> bool:
    """True outside torchrun and on its rank 0 (read from torchrun's RANK)."""
    try:
        return int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True


def info(message: str) -> None:
    """One line on stderr, from rank 0 only: a torchrun job says each thing once."""
    if is_main_process():
        print(message, file=sys.stderr)


def check_out_file(path: str | None, option: str, image: bool = True,
                   example: str | None = None) -> None:
    """Refuse an output file name that cannot be written, before any work is done; make its
    folder. ``image``: the name must end in an image format (.png, .jpg). ``example``: a file
    name to suggest when ``path`` is a folder (default grid.png, or morph.gif for a non-image).
    The folder is tried by creating (and removing) a file in it, as the atomic write will."""
    if not path:
        return
    from ..sampling import image_format

    p = Path(path)
    if p.is_dir():
        example = example or ("grid.png" if image else "morph.gif")
        raise UserError(f"{option} '{p}' is a folder; give {option} a file name such as "
                        f"{p / example}")
    if image:
        image_format(p)
    folder = p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"cannot write {option} '{p}': '{folder}' is a file, not a folder; give "
                        f"{option} another path")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write {option} '{p}' ({e.strerror or e}); give {option} a path in "
                        "a writable place") from None
    error = can_create_files_in(p.parent)
    if error is not None:
        # The folder exists, so "No such file or directory" (what /proc answers) would mislead.
        why = "" if error.errno == errno.ENOENT else f" ({error.strerror or error})"
        raise UserError(f"cannot write {option} '{p}': '{p.parent}' does not take new files{why}; "
                        f"give {option} a path in a writable place")


# The options many commands share, each with one help line.
def add_run(parser, dest: str = "run") -> None:
    """The positional run argument: a run folder or a checkpoint file."""
    parser.add_argument(dest, metavar="RUN_DIR_OR_CHECKPOINT", help="a run folder (facegan train "
                        "--out) or a checkpoint file in it (checkpoints/*.pt)")


def add_device(parser, default: str | None = "auto") -> None:
    """--device; ``default`` None leaves it to the run's config (train.device)."""
    parser.add_argument("--device", default=default, help="auto (a CUDA GPU when there is one, "
                        "else the CPU), cpu, cuda or cuda:N" + ("" if default else
                                                                 " (default: the run's train.device)"))


# torch.manual_seed takes a 64-bit integer; negative ones alias large ones (-1 is 2**64-1).
MAX_SEED = 2**63 - 1


def seed_value(text: str) -> int:
    """argparse type of a --seed: an integer in [0, :data:`MAX_SEED`]."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed '{text}': give a whole number from 0 to "
                                         f"{MAX_SEED}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed {value} is out of range: give a whole number from "
                                         f"0 to {MAX_SEED}")
    return value


def add_seed(parser, what: str) -> None:
    """--seed, default 0: the same seed gives the same ``what``."""
    parser.add_argument("--seed", type=seed_value, default=0, help=f"random seed: the same seed "
                        f"gives the same {what} (default %(default)s)")


def check_count(value: int | None, option: str, maximum: int, why: str, minimum: int = 1) -> None:
    """Refuse a count outside [minimum, maximum] before any work, in one line; ``why`` says
    what the bound keeps (e.g. "memory: more frames than a morph shows")."""
    if value is None:
        return
    if value < minimum:
        raise UserError(f"{option} must be at least {minimum}, got {value}")
    if value > maximum:
        raise UserError(f"{option} {value:,} is more than {maximum:,} ({why}); give a smaller "
                        f"{option}")


def add_no_ema(parser) -> None:
    parser.add_argument("--no-ema", action="store_true", help="use the raw generator, not its "
                        "EMA (the smoothed weights, which draw better faces)")


def check_batch_size(value: int | None, option: str = "--batch-size") -> None:
    """Refuse a batch size below 1 (a number of images per forward pass)."""
    if value is not None and value < 1:
        raise UserError(f"{option} must be at least 1 (images per forward pass), got {value}")


__all__ = [
    "EXIT_DIVERGED",
    "EXIT_INTERRUPTED",
    "EXIT_USER_ERROR",
    "MAX_SEED",
    "add_device",
    "add_no_ema",
    "add_run",
    "add_seed",
    "check_batch_size",
    "check_count",
    "check_out_file",
    "info",
    "is_main_process",
    "make_out_dir",
    "seed_value",
]
