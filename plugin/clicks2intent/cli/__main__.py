"""``python -m clicks2intent.cli``: the same as the ``c2i`` command."""

import sys

from clicks2intent.cli import main

sys.exit(main())
