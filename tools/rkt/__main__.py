"""``python -m appc_tools.rkt``."""

import sys

from appc_tools.rkt import main

sys.exit(main())
