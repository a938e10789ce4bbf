import sys

from vaetheory.cli import main

sys.exit(main())
