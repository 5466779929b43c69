"""PII scrubbing for free text (search queries, referrers, any string a source carries) before it
reaches an LLM, a feature or a log.

A bank's visitors paste card numbers, account numbers and e-mail addresses into search boxes, and
search-engine referrers carry the query that led them here. Every reader of free text goes through
:func:`scrub` (or :func:`scrub_referrer` for URLs), which replaces each match by a typed placeholder so
the text keeps its shape ("pay <CARD> bill") while the value is gone.

* **Linear time.** Every quantifier that can repeat is bounded, and patterns start only at a token
  boundary, so a 200 kB query costs about what 200 short ones do (an unbounded e-mail pattern made
  20k characters take 6 s: quadratic backtracking). :data:`MAX_SCRUB_CHARS` bounds the work per text
  for callers that cap their input anyway.
* **Invisible characters first.** NUL, other control characters, zero-width and bidi-override
  characters are turned into spaces before matching: ``"4111\\u200b1111…"`` or a trailing NUL must not
  hide a value from the patterns (nor spoof what a reviewer reads).
* **Order matters:** e-mails (plain and obfuscated: ``john dot doe at gmail dot com``,
  ``jane[at]example[dot]org``), IBAN-style account numbers, Luhn-valid cards, SSNs, phones, then the
  catch-all rule for any remaining run of 6+ digits.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from urllib.parse import unquote_plus

EMAIL = "<EMAIL>"
CARD = "<CARD>"
SSN = "<SSN>"
PHONE = "<PHONE>"
ACCOUNT = "<ACCOUNT>"
QUERY = "<QUERY>"  # a URL's query string / fragment, dropped whole by scrub_referrer
PLACEHOLDERS: tuple[str, ...] = (EMAIL, CARD, SSN, PHONE, ACCOUNT, QUERY)

# Control characters (C0 incl. NUL, DEL, C1), zero-width and bidi-formatting characters, BOM.
_INVISIBLE_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")

# --- e-mail addresses, plain and obfuscated --------------------------------------------------------
_LABEL = r"[A-Za-z0-9_%+-]{1,64}"
_LOCAL_DOT = r"(?:\.|\s{0,3}[\[({<]\s{0,2}dot\s{0,2}[\])}>]\s{0,3}|\s{1,3}dot\s{1,3})"
_AT_REAL = r"\s{0,3}(?:@|%40)\s{0,3}"
_AT_BRACKET = r"\s{0,3}[\[({<]\s{0,2}(?:at|@)\s{0,2}[\])}>]\s{0,3}"
_AT_WORD = r"\s{1,3}at\s{1,3}"
_DOT = r"(?:\s{0,3}\.\s{0,3}|\s{0,3}[\[({<]\s{0,2}(?:dot|\.)\s{0,2}[\])}>]\s{0,3}|\s{1,3}dot\s{1,3})"
_TLD = r"[A-Za-z]{2,24}"
# Spelled-out "at" is an ordinary word ("rates at chase"): accept it only before a common TLD.
_COMMON_TLD = (
    r"(?:com|org|net|edu|gov|mil|int|info|biz|io|co|me|us|uk|de|fr|es|it|nl|be|ch|at|se|no|dk|fi|ie|pt|"
    r"pl|cz|ca|au|nz|in|jp|cn|br|mx|ru|za|eu|online|email|mail)"
)
_START = r"(?<![A-Za-z0-9._%+-])"  # a local part starts at a token boundary: one try per token
_END = r"(?![A-Za-z0-9-])"
_EMAIL_RE = re.compile(
    rf"{_START}{_LABEL}(?:{_LOCAL_DOT}{_LABEL}){{0,6}}"
    rf"(?:(?:{_AT_REAL}|{_AT_BRACKET}){_LABEL}(?:{_DOT}{_LABEL}){{0,6}}{_DOT}{_TLD}"
    rf"|{_AT_WORD}{_LABEL}(?:{_DOT}{_LABEL}){{0,6}}{_DOT}{_COMMON_TLD}){_END}",
    re.I,
)
# IBAN-style account numbers: country code, 2 check digits, 10-30 letters/digits (grouped or not).
_IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]){10,30}(?![A-Za-z0-9])")
# 13–19 digits, optionally grouped by spaces, dashes or dots (how people type card numbers).
_CARD_RE = re.compile(r"(?<!\d)(?:\d[ .-]?){12,18}\d(?!\d)")
_SSN_RE = re.compile(
    r"(?<!\d)\d{3}[- ]\d{2}[- ]\d{4}(?!\d)|(?<![A-Za-z])(?:ssn|social security)\D{0,12}\d{9}(?!\d)", re.I
)
_PHONE_RE = re.compile(r"(?<![\d\w])(?:\+?1[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]?\d{4}(?!\d)")
# Account and routing numbers: any remaining run of 6+ digits (possibly with single separators).
_LONG_DIGITS_RE = re.compile(r"(?<!\d)\d(?:[ .-]?\d){5,}(?!\d)")

# A URL pasted into free text: its query string goes whole, as in a referrer (bounded, linear).
_URL_RE = re.compile(r"(?<![A-Za-z0-9])(?:https?|ftp)://[^\s?#]{0,2048}(?:[?#][^\s]{0,4096})?", re.I)

MAX_SCRUB_CHARS = 1 << 20  # patterns are linear; this only bounds memory for absurd inputs


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


def _iban_or_keep(match: re.Match[str]) -> str:
    """An IBAN has many digits; "ab12 months fixed" has three (ordinary text is kept)."""
    return ACCOUNT if sum(ch.isdigit() for ch in match.group(0)) >= 8 else match.group(0)


_RULES: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], str] | str], ...] = (
    (EMAIL, _EMAIL_RE, EMAIL),
    (ACCOUNT, _IBAN_RE, _iban_or_keep),
    (CARD, _CARD_RE, _card_or_keep),
    (SSN, _SSN_RE, SSN),
    (PHONE, _PHONE_RE, PHONE),
    (ACCOUNT, _LONG_DIGITS_RE, ACCOUNT),
)


def clean_text(text: str) -> str:
    """``text`` with control, zero-width and bidi-formatting characters (NUL included) as spaces."""
    return _INVISIBLE_RE.sub(" ", text)


def scrub_with_counts(text: str) -> tuple[str, Counter[str]]:
    """Scrub ``text`` and count the placeholders inserted per PII type (for the validation report)."""
    counts: Counter[str] = Counter()
    text = clean_text(text[:MAX_SCRUB_CHARS])
    if "://" in text:
        text = _URL_RE.sub(lambda m: _drop_query(m.group(0), counts), text)
    for name, pattern, repl in _RULES:
        before = text
        text = pattern.sub(repl, text)
        if text != before:
            counts[name] += text.count(name) - before.count(name)
    return text, +counts


def _drop_query(url: str, counts: Counter[str]) -> str:
    """A URL with its query string and fragment replaced by ``<QUERY>``; the path is decoded."""
    cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=-1)
    head = unquote_plus(url if cut < 0 else url[:cut], errors="replace")
    tail = url[cut + 1 :] if cut >= 0 else ""
    if tail == QUERY:  # already dropped (a scrubbed referrer scrubbed again)
        return head + "?" + QUERY
    if tail.strip():
        counts[QUERY] += 1
        return head + "?" + QUERY
    return head


def scrub(text: str) -> str:
    """Return ``text`` with e-mails, IBANs, Luhn-valid cards, SSNs, phones and long digit runs replaced."""
    return scrub_with_counts(text)[0]


def scrub_referrer_with_counts(url: str) -> tuple[str, Counter[str]]:
    """A referrer URL without its query string and fragment (search engines put the visitor's query
    there: replaced whole by ``<QUERY>``); the rest is percent-decoded and scrubbed like free text."""
    counts: Counter[str] = Counter()
    head = _drop_query(clean_text(url[:MAX_SCRUB_CHARS]).strip(), counts)
    text, found = scrub_with_counts(head)
    return text, counts + found


def scrub_referrer(url: str) -> str:
    """:func:`scrub_referrer_with_counts` without the counts."""
    return scrub_referrer_with_counts(url)[0]


def contains_pii(text: str) -> bool:
    """True when :func:`scrub` would change ``text`` (beyond invisible characters); used by tests and audits."""
    return scrub(text) != clean_text(text)
