"""``python -m entrypoints``: the same as the ``kalshiflow-rl`` console script."""

import sys

from entrypoints.cli import main

sys.exit(main())
