"""What the benchmark scripts share: where the real images come from.

A benchmark names its data with ``--data DIR``; without it, the environment variable
``CELEBA_DIR`` (a CelebA folder with ``img_align_celeba/``) is the default. With neither, the
script stops with a one-line error and exit status 2.
"""

import argparse
import os
import sys

CELEBA = ("CELEBA_DIR", "a CelebA folder with img_align_celeba/")


def add_data_option(parser: argparse.ArgumentParser, env: str = CELEBA[0], what: str = CELEBA[1]) -> None:
    """``--data``, defaulting to the environment variable ``env``."""
    parser.add_argument("--data", default=os.environ.get(env) or None, metavar=env,
                        help=f"{what} (default: ${env})")


def require_data(args: argparse.Namespace, env: str = CELEBA[0], what: str = CELEBA[1]) -> str:
    """``args.data``, or exit 2 with one line saying how to give it."""
    if not args.data:
        print(f"benchmark: give --data {env} ({what}) or set {env}", file=sys.stderr)
        sys.exit(2)
    return args.data
