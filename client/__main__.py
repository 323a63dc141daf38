"""`python -m client ...` is the `vaeserve` command."""

import sys

from client.cli import main

sys.exit(main())
