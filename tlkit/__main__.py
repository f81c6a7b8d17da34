"""``python -m tlkit``: the same as the ``tlkit`` console script."""

import sys

from tlkit.cli.main import main

sys.exit(main())
