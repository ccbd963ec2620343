"""``python -m pypicache.cli``."""

import sys

from pypicache.cli import main

sys.exit(main())
