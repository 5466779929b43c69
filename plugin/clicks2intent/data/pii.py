"""PII scrubbing for free text (search queries) before it reaches an LLM, a feature or a log.

A bank's visitors paste card numbers, account numbers and e-mail addresses into search boxes. Every
reader of free text goes through :func:`scrub`, which replaces each match by a typed placeholder so the
text keeps its shape ("pay <CARD> bill") while the value is gone. Order matters: the most specific
patterns (e-mail, Luhn-valid card, SSN, phone) run before the catch-all long-digit-run rule.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

EMAIL = "<EMAIL>"
CARD = "<CARD>"
SSN = "<SSN>"
PHONE = "<PHONE>"
ACCOUNT = "<ACCOUNT>"

_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+\s*@\s*[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# 13–19 digits, optionally grouped by spaces or dashes (how people type card numbers).
_CARD_RE = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_SSN_RE = re.compile(
    r"(?<!\d)\d{3}[- ]\d{2}[- ]\d{4}(?!\d)|(?<!\d)(?:ssn|social security)\D{0,12}\d{9}(?!\d)", re.I
)
_PHONE_RE = re.compile(r"(?<![\d\w])(?:\+?1[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}(?!\d)")
# Account and routing numbers: any remaining run of 6+ digits (possibly with separators).
_LONG_DIGITS_RE = re.compile(r"(?<!\d)\d(?:[ -]?\d){5,}(?!\d)")


def luhn_valid(digits: str) -> bool:
    """True when a digit string passes the Luhn checksum that every payment card number carries."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_or_keep(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return CARD if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)


_RULES: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], str] | str], ...] = (
    (EMAIL, _EMAIL_RE, EMAIL),
    (CARD, _CARD_RE, _card_or_keep),
    (SSN, _SSN_RE, SSN),
    (PHONE, _PHONE_RE, PHONE),
    (ACCOUNT, _LONG_DIGITS_RE, ACCOUNT),
)


def scrub_with_counts(text: str) -> tuple[str, Counter[str]]:
    """Scrub ``text`` and count the placeholders inserted per PII type (for the validation report)."""
    counts: Counter[str] = Counter()
    for name, pattern, repl in _RULES:
        before = text
        text = pattern.sub(repl, text)
        if text != before:
            counts[name] += text.count(name) - before.count(name)
    return text, counts


def scrub(text: str) -> str:
    """Return ``text`` with e-mails, Luhn-valid cards, SSNs, phone and long digit runs replaced."""
    return scrub_with_counts(text)[0]


def contains_pii(text: str) -> bool:
    """True when :func:`scrub` would change ``text``; used by tests and output audits."""
    return scrub(text) != text
