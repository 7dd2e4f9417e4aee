"""`python -m bench`: the benchmark suite (see bench.run_all).

Run this way, worker processes the benchmarks start do not re-import the suite (multiprocessing skips a
`__main__` module), so their memory is what the indexer's workers use, not the benchmark's imports.
"""

import sys

from bench.run_all import main

sys.exit(main())
