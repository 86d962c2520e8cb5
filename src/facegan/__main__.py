"""``python -m facegan`` (and ``torchrun ... -m facegan train ...``): the facegan command."""

import sys

from .cli import main

sys.exit(main())
