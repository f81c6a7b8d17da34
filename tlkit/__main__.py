"""``python -m tlkit``: the same as the ``tlkit`` console script."""

import sys

from tlkit.cli import main

sys.exit(main())
