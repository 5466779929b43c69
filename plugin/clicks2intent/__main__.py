"""``python -m clicks2intent``: the same as the ``c2i`` command."""

import sys

from clicks2intent.cli import main

sys.exit(main())
