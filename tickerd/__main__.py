"""``python -m tickerd``."""

import sys

from tickerd.commands.main import main

sys.exit(main())
