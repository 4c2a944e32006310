"""`python -m streams` runs the livepulse CLI."""

import sys

from streams.cli import main

sys.exit(main())
