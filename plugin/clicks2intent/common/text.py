"""The one rule for ids (session, visitor, customer), shared by the contract and the request schemas.

Ids are opaque keys, never text: 1 to :data:`MAX_ID_CHARS` characters with no whitespace, control
characters (NUL included), zero-width, bidi-override or other formatting characters, or private-use
code points, which would make two ids look alike in a log or a review (``c1\\u202e`` vs ``c1``) or
truncate them in C-based tools. One pattern, valid in Python, Rust (pydantic-core) and ECMA-262
(the OpenAPI document), so what the schema promises is exactly what the server checks.
"""

from __future__ import annotations

import re

MAX_ID_CHARS = 128
_FORBIDDEN = (
    r"\x00-\x20\x7f-\xa0\xad\u0600-\u0605\u061c\u06dd\u070f\u180e\u1680\u2000-\u200f\u2028-\u202f"
    r"\u205f-\u206f\u3000\ue000-\uf8ff\ufeff\ufff0-\uffff"
)
ID_PATTERN = rf"^[^{_FORBIDDEN}]{{1,{MAX_ID_CHARS}}}$"
_ID_RE = re.compile(ID_PATTERN)


def valid_id(value: str) -> bool:
    """True when ``value`` is an acceptable id (see the module docstring)."""
    return _ID_RE.match(value) is not None
