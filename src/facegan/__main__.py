"""``python -m facegan`` (and ``torchrun ... -m facegan train ...``): the facegan command."""

import sys

from .commands import main

sys.exit(main())
