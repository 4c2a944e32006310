"""`python -m bench`: the benchmark harness (bench/README.md)."""

import sys

from bench.run import main

sys.exit(main())
