"""``python -m vaetheory``: the command line (:mod:`vaetheory.cli`)."""

import sys

from vaetheory.cli import main

sys.exit(main())
