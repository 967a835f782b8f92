"""Build throughput beside ``tar -c | gzip -6`` measured in the same run (``python bench/build.py``).

The build rows of ``bench/run.py``; see there for all targets.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.run import main

if __name__ == "__main__":
    sys.exit(main(["--only", "build", *sys.argv[1:]]))
