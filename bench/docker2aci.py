"""docker2aci conversion throughput beside ``skopeo copy`` of the same image, in the same run.

``python bench/docker2aci.py [--quick]``: a multi-layer image from a local registry v2;
the docker2aci row of ``bench/run.py``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.run import main

if __name__ == "__main__":
    sys.exit(main(["--only", "docker2aci", *sys.argv[1:]]))
