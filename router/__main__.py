"""`python -m router`: serve with the defaults (same as `router serve`)."""

import sys

from router.commands.cli import main

raise SystemExit(main(sys.argv[1:] or ["serve"]))
