"""`python -m microstate.server` is the `microstate` command."""

import sys

from microstate.server.cli import main

sys.exit(main())
