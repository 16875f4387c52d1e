"""python -m bench: the load-test harness (see bench/README.md)."""

import sys

from .cli import main

sys.exit(main())
