"""Flags whose defaults live in a heavy library module (a config dataclass beside pandas, scikit-learn or
torch imports).

``c2i <command> --help`` and a mistyped flag must not import those stages, so such a flag's parser
default is ``None`` ("not given") and the handler passes only the flags that were given: the config
dataclass applies its own default, which stays defined once, in the library (the flag's help names the
field). Paths keep their defaults in the parser: :data:`clicks2intent.names.paths.ARTIFACTS` is light and
is where the library takes them from too. Choice lists a heavy module defines are repeated beside their
flag; ``tests/test_cli_help.py`` checks each copy equals the library's.
"""

from __future__ import annotations

from typing import Any


def given(**values: Any) -> dict[str, Any]:
    """The keyword arguments whose flag was given (``None``: not given, the dataclass default applies)."""
    return {name: value for name, value in values.items() if value is not None}
