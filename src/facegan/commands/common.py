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

__all__ = [
    "EXIT_DIVERGED",
    "EXIT_INTERRUPTED",
    "EXIT_USER_ERROR",
    "check_out_file",
    "info",
    "is_main_process",
    "make_out_dir",
]
