"""`python -m dtmm ...` is the `dtmm` command."""

import sys

from dtmm.cli import main

sys.exit(main())
