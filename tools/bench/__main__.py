"""``python -m tools.bench [options]``: the bench (``tools.bench.figures`` has the options)."""

import sys

from tools.bench.figures import main

sys.exit(main())
