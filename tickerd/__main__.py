"""``python -m tickerd``."""

import sys

from tickerd.cli import main

sys.exit(main())
