"""``c2i settings``: the ``C2I_*`` settings this process sees, or (``--markdown``) the README's table."""

from __future__ import annotations

import argparse

from clicks2intent.common.settings import Settings, readme_block


def settings_command(args: argparse.Namespace) -> int:
    if args.markdown:
        print(readme_block())
        return 0
    current = Settings.load()
    for name, field in Settings.model_fields.items():
        print(f"{field.validation_alias}={'' if getattr(current, name) is None else getattr(current, name)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``c2i settings``."""
    p = subparsers.add_parser("settings", help="show the C2I_* settings in effect (or the README table)")
    p.add_argument("--markdown", action="store_true", help="print the README's settings table instead")
    p.set_defaults(func=settings_command)
