"""PII scrubbing for free text (search queries, referrers, device strings, page names) before it
reaches an LLM, a feature or a log.

A bank's visitors paste card numbers, account numbers and e-mail addresses into search boxes, and
search-engine referrers carry the query that led them here. Every reader of free text goes through
:func:`scrub` (or :func:`scrub_referrer` for URLs), which replaces each match by a typed placeholder so
the text keeps its shape ("pay <CARD> bill") while the value is gone. Text that is not PII comes back
unchanged, character for character (except invisible characters, see :func:`clean_text`).

**Normalise, then match.** Matching runs on a *detection view* of the text; the replacement is made
on the original span, so "4111%C2%A01111…" loses exactly its encoded characters. The view:

* percent-decoding (twice: ``%2540`` is ``@``) and HTML character references (``&#64;``), decoded
  as UTF-8 (``j%C3%B6rg`` is ``jörg``);
* Unicode NFKC (fullwidth ``４１１１`` and ``＠``, small ``﹫``, mathematical digits), every decimal
  digit as its ASCII digit (Arabic-Indic, Devanagari…), every whitespace kind as a space, every dash
  kind (en/em dash, minus sign, non-breaking hyphen…) as ``-``, ideographic full stop as ``.``;
* zero-width, bidi and other format characters, soft hyphens and combining marks removed (by
  :func:`clean_text`, which also shows in the output, one between a letter and a digit becomes a
  space: it must not glue a number to a word).

**What is matched** (see SECURITY.md for the user-facing list):

* ``<EMAIL>``: mailbox names in any script, IDN and punycode domains; ``@`` also as ``(at)``,
  ``[at]``, ``{at}``, ``(@)``; obfuscated ``john dot doe at example dot com``. A spelled-out ``at``
  is an ordinary word, so it counts only when the domain spells a dot out too (``dot``, ``(dot)``)
  or ends in a known top-level domain (:data:`_KNOWN_TLDS`, every two-letter code included).
* ``<ACCOUNT>``: IBANs (registered country, its registered length, mod-97 check digits); the
  user-info of a URL (``https://user:pass@host``); account-like digit runs (below); 6+ digits right
  after an account word (``acct``, ``routing``, ``sort code``, ``member number``…).
* ``<CARD>``: 13 to 19 digits passing the Luhn check, in groups separated by anything people type
  between digits (spaces of any kind, dashes, dots, commas, slashes, underscores, ``+``, up to three
  characters such as ``" - "`` or two spaces).
* ``<SSN>``: national ids, each with its validity rule: US SSN (``AAA-GG-SSSS``; area not 000, 666
  or 9xx, group not 00, serial not 0000) and ITIN (9xx with an ITIN group), UK National Insurance
  number (HMRC prefix rules; suffix A-D, or the id word before it), Canadian SIN (3-3-3 with spaces
  or dashes, Luhn), Spanish DNI/NIE (check letter), Italian codice fiscale (check character), French
  NIR (mod-97 key), Brazilian CPF (``ddd.ddd.ddd-dd``, two mod-11 check digits), Swedish personnummer
  (date + Luhn), Indian Aadhaar (4-4-4, Verhoeff), Chinese resident id (ISO 7064 check); also 6+ digits
  right after an id word (``ssn``, ``tax id``, ``bsn``…).
* ``<PHONE>``: North American numbers (NXX-NXX-XXXX, optional 1/+1), ``+``/``00`` international
  numbers (8 to 15 digits), national numbers with a trunk ``0`` (10-11 digits), and 7+ digits after
  ``call``/``phone``/``text me``…. Toll-free and free-phone numbers (1-8XX with XX in 00, 33, 44, 55,
  66, 77, 88; UK 0800/0808/0500; +800) are a business's public number, not personal: they are kept.
  A phone number fills whole space-separated blocks (no phone inside ``01/01/2025 - 01/31/2025``).

**Account-like digit runs.** A run of digit groups that nothing above claimed is an account number
when it holds 8 or more digits: bank account numbers are 8 to 17 digits in most of the world (UK 8,
US 8-12, routing numbers 9), while ordinary numbers in bank searches (amounts, years, ZIP codes,
branch and check numbers) are shorter. Longer ordinary numbers are recognised by shape and kept:
dates (``2024-03-15``, ``15.03.2025``), ZIP+4 (``10001-1234``), formatted amounts (``1,250,000``,
``1.250.000,00``), versions and addresses (``125.0.2535.67``), year ranges and lists (``2019-2024``,
``2023 2024``), toll-free numbers, numbers after a currency sign or before ``dollars``/``k``/``%``,
numbers right after a reference word (``order``, ``confirmation``, ``invoice``, ``tracking``, ``case``,
``sku``…), and codes glued to a 2-4 letter prefix that is not an IBAN's head (``AB12-3456-7890``,
``INV-20240315-0042``; at most 12 digits). A year-like group next to other digits is part of them
(``3000 2000`` is an account number, and so is ``limit 2025 7000``: privacy first). A chain of groups
that holds a card, id or phone is scrubbed whole (an expiry date or CVV typed after a card goes with
it). Known limits: a 6-7 digit account number without an account word is kept, and so is one written
in an exempt shape; an unformatted 8+ digit amount, order or tracking number without its word, a
routing number after its word and a business's (not toll-free) phone number are scrubbed.

* **Linear time.** Every quantifier that can repeat is bounded, patterns start at token boundaries,
  digit chains are classified in one pass: the cost grows with the length of the text.
  :data:`MAX_SCRUB_CHARS` bounds the work per text for callers that do not cap their input.
* **Fast path.** ASCII text without percent or HTML escapes is its own detection view; text with
  fewer than six digits skips the digit rules, text without an at-sign (or a spelled-out "at" and a
  dot) the e-mail rule.
* **Referrers.** :func:`scrub_referrer` drops the query string and the user-info, decodes the path
  once and scrubs it as free text (a decoded ``#`` or ``?`` is not parsed as a URL again).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from urllib.parse import unquote_plus

EMAIL = "<EMAIL>"
CARD = "<CARD>"
SSN = "<SSN>"
PHONE = "<PHONE>"
ACCOUNT = "<ACCOUNT>"
QUERY = "<QUERY>"  # a URL's query string / fragment, dropped whole by scrub_referrer
PLACEHOLDERS: tuple[str, ...] = (EMAIL, CARD, SSN, PHONE, ACCOUNT, QUERY)

MAX_SCRUB_CHARS = 1 << 20  # patterns are linear; this only bounds memory for absurd inputs

# Controls (C0 incl. NUL, DEL, C1) and line/paragraph separators separate words: they become spaces.
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# Zero-width, bidi and other format characters, soft hyphen, BOM: invisible, so they are removed
# ("jo\u200bhn@example.com" must read as the address a reader sees, not as "jo" and "hn@…").
_FORMAT = "\u00ad\u034f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff"
_FORMAT_RE = re.compile(f"[{_FORMAT}]")
# ...except between a letter and a digit (or an escape: "%34"), where one would glue a number to a word
_FORMAT_SPLIT_RE = re.compile(rf"(?<=[^\W\d_])[{_FORMAT}]+(?=[\d%&])|(?<=\d)[{_FORMAT}]+(?=[^\W\d_])")

# --- the detection view -------------------------------------------------------------------------------
_ENCODED_RE = re.compile(r"(?:%[0-9A-Fa-f]{2})+|&#[0-9]{1,7};|&#[xX][0-9A-Fa-f]{1,6};|&[A-Za-z]{2,8};")
_MINUS_LIKE = frozenset("\u2212\u2043\u2796\ufe63\uff0d")
_FULL_STOPS = frozenset("\u3002\uff61")
_FOLD_CACHE: dict[str, str] = {}
_FOLD_CACHE_MAX = 1 << 16


def _fold_one(ch: str) -> str:
    """One character of the detection view ('' removes it); ``ch`` is not ASCII."""
    cat = unicodedata.category(ch)
    if cat == "Cf" or cat[0] == "M":
        return ""
    if ch.isspace() or cat in ("Zs", "Zl", "Zp", "Cc"):
        return " "
    if cat == "Pd" or ch in _MINUS_LIKE:
        return "-"
    out = []
    for c in unicodedata.normalize("NFKC", ch):
        c_cat = unicodedata.category(c)
        if c_cat == "Cf" or c_cat[0] == "M":
            continue
        if c.isspace():
            out.append(" ")
        elif c_cat == "Pd" or c in _MINUS_LIKE:
            out.append("-")
        elif c in _FULL_STOPS:
            out.append(".")
        elif c.isdecimal():
            out.append(str(unicodedata.decimal(c)))
        else:
            out.append(c)
    return "".join(out)


def _fold_char(ch: str) -> str:
    hit = _FOLD_CACHE.get(ch)
    if hit is None:
        hit = _fold_one(ch)
        if len(_FOLD_CACHE) < _FOLD_CACHE_MAX:
            _FOLD_CACHE[ch] = hit
    return hit


class _View:
    """The detection view of a text: ``chars[i]`` came from ``text[start[i]:end[i]]``."""

    __slots__ = ("chars", "end", "start")

    def __init__(self) -> None:
        self.chars: list[str] = []
        self.start: list[int] = []
        self.end: list[int] = []

    def copy(self, src: str, lo: int, hi: int, start: list[int], end: list[int]) -> None:
        """``src[lo:hi]`` unchanged (``start``/``end`` map ``src`` to the original)."""
        self.chars.append(src[lo:hi])
        self.start.extend(start[lo:hi])
        self.end.extend(end[lo:hi])

    def put(self, s: str, lo: int, hi: int, start: list[int], end: list[int]) -> None:
        """``s`` stands for ``src[lo:hi]``; an empty ``s`` hands the removed span to the previous char."""
        if s:
            self.chars.append(s)
            self.start.extend([start[lo]] * len(s))
            self.end.extend([end[hi - 1]] * len(s))
        elif self.end:
            self.end[-1] = max(self.end[-1], end[hi - 1])

    def text(self) -> str:
        return "".join(self.chars)


def _utf8_length(lead: int) -> int:
    """Bytes in the UTF-8 sequence that starts with ``lead`` (0: not a lead byte)."""
    if lead < 0x80:
        return 1
    for n, (lo, hi) in enumerate(((0xC2, 0xE0), (0xE0, 0xF0), (0xF0, 0xF5)), start=2):
        if lo <= lead < hi:
            return n
    return 0


def _decode_percent(run: str) -> list[tuple[str, int, int]]:
    """A run of ``%XX`` as (char, lo, hi) pieces: UTF-8 sequences decoded, invalid bytes kept literal."""
    data = bytes.fromhex(run.replace("%", ""))
    out: list[tuple[str, int, int]] = []
    i = 0
    while i < len(data):
        n = _utf8_length(data[i])
        try:
            ch = data[i : i + n].decode("utf-8") if n else ""
        except UnicodeDecodeError:
            ch = ""
        if len(ch) == 1:
            out.append((" " if ch < " " or ch == "\x7f" else ch, 3 * i, 3 * (i + n)))
            i += n
        else:
            out.extend((run[k], k, k + 1) for k in range(3 * i, 3 * i + 3))
            i += 1
    return out


def _decode_once(src: str, start: list[int], end: list[int]) -> tuple[str, list[int], list[int]]:
    view = _View()
    pos = 0
    for m in _ENCODED_RE.finditer(src):
        view.copy(src, pos, m.start(), start, end)
        token = m.group(0)
        if token[0] == "%":
            for ch, lo, hi in _decode_percent(token):
                view.put(ch, m.start() + lo, m.start() + hi, start, end)
        else:
            ch = html.unescape(token)
            if len(ch) == 1:
                view.put(" " if ch < " " else ch, m.start(), m.end(), start, end)
            else:  # not an entity html knows: keep it as typed
                view.copy(src, m.start(), m.end(), start, end)
        pos = m.end()
    view.copy(src, pos, len(src), start, end)
    return view.text(), view.start, view.end


_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]+")


def _detection_view(text: str) -> tuple[str, list[int] | None, list[int] | None]:
    """(view, start, end) of ``text``; ``None`` maps when the view is ``text`` itself (the fast path)."""
    encoded = ("%" in text or "&" in text) and _ENCODED_RE.search(text) is not None
    if text.isascii() and not encoded:
        return text, None, None
    src, start, end = text, list(range(len(text))), list(range(1, len(text) + 1))
    for _ in range(2):  # twice: a double-encoded "%2540" is an at-sign too
        if not encoded:
            break
        src, start, end = _decode_once(src, start, end)
        encoded = ("%" in src or "&" in src) and _ENCODED_RE.search(src) is not None
    view = _View()
    pos = 0
    for m in _NON_ASCII_RE.finditer(src):
        view.copy(src, pos, m.start(), start, end)
        for k in range(m.start(), m.end()):
            view.put(_fold_char(src[k]), k, k + 1, start, end)
        pos = m.end()
    view.copy(src, pos, len(src), start, end)
    return view.text(), view.start, view.end


# --- e-mail addresses, plain and obfuscated ------------------------------------------------------------
_LABEL = r"[\w%+'\-]{1,64}"
_LOCAL_DOT = r"(?:\.|\s{0,3}[\[({<]\s{0,2}dot\s{0,2}[\])}>]\s{0,3}|\s{1,3}dot\s{1,3})"
_AT_SIGN = r"(?:\s{0,3}@\s{0,3}|\s{0,3}[\[({<]\s{0,2}(?:at|@)\s{0,2}[\])}>]\s{0,3})"
_AT_WORD = r"\s{1,3}at\s{1,3}"
_DLABEL = r"[\w\-]{1,63}"
_DOT_REAL = r"\s{0,2}\.\s{0,2}"
_DOT_SPELLED = r"(?:\s{0,3}[\[({<]\s{0,2}(?:dot|\.)\s{0,2}[\])}>]\s{0,3}|\s{1,3}dot\s{1,3})"
_DOT = rf"(?:{_DOT_REAL}|{_DOT_SPELLED})"
_TLD = r"(?:xn--[a-z0-9\-]{1,59}|[^\W\d_]{2,24})"
# Generic TLDs accepted after a spelled-out "at" and a real dot ("jane at example.org"); any
# two-letter code counts too. A spelled-out dot ("example dot travel") accepts any ending.
_KNOWN_TLDS = (
    "com|org|net|edu|gov|mil|int|info|biz|name|pro|mobi|app|dev|online|site|store|shop|tech|email|mail|"
    "cloud|live|life|world|today|global|group|family|travel|finance|money|credit|loans|bank|insurance|"
    "company|business|xyz|top|club|agency|digital|media|news|blog|web|website|space|studio|design|"
    "solutions|services|support|network|systems|center|works|zone|page|link|click|art|museum|"
    "photography|aero|coop|jobs|tel|asia|cat|post|me|[a-z]{2}"
)
_START = r"(?<![\w.%+'\-])"  # a local part starts at a token boundary: one try per token
_EMAIL_RE = re.compile(
    rf"{_START}{_LABEL}(?:{_LOCAL_DOT}{_LABEL}){{0,6}}"
    rf"(?:{_AT_SIGN}{_DLABEL}(?:{_DOT}{_DLABEL}){{0,6}}{_DOT}{_TLD}"
    rf"|{_AT_WORD}{_DLABEL}(?:{_DOT}{_DLABEL}){{0,6}}"
    rf"(?:{_DOT_SPELLED}{_TLD}|{_DOT_REAL}(?:{_KNOWN_TLDS})))(?![\w\-])",
    re.I,
)
_AT_HINT_RE = re.compile(r"\bat\b", re.I)
_DOT_HINT_RE = re.compile(r"\.|dot", re.I)

# --- IBANs and ids that carry letters -----------------------------------------------------------------
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
_IBAN_RE = re.compile(
    r"(?<![^\W_])([A-Za-z]{2})[\s.,/_-]{0,2}([0-9]{2})((?:[\s.,/_-]{0,2}[A-Za-z0-9]){8,31})"
)
_SEP2 = r"[\s./_-]{0,2}"
# An id led by letters starts a word, one led by digits starts a number; what follows may be a letter
# (a glued suffix, or the next word once a zero-width character is gone: "AB123456C\u200bthanks"), not a
# digit. A NINO's suffix is glued to it or stands alone; without one the NINO needs its label.
_LETTERED_ID_RE = re.compile(
    rf"(?:(?<![^\W_])(?P<nino>[A-Za-z]{{2}}){_SEP2}[0-9]{{2}}{_SEP2}[0-9]{{2}}{_SEP2}[0-9]{{2}}"
    r"(?:(?P<suffix>[A-Da-d])|[\s./_-]{1,2}(?P<spaced_suffix>[A-Da-d])(?![^\W_])|(?![^\W_]))"
    r"|(?:(?<![^\W_])(?P<nie>[XYZxyz])[\s.-]?(?P<nie_digits>[0-9]{7})"
    r"|(?<![0-9])(?P<dni>[0-9]{8}|[0-9]{2}\.[0-9]{3}\.[0-9]{3}))"
    r"(?:(?P<letter>[A-Za-z])|[\s.-](?P<spaced_letter>[A-Za-z])(?![^\W_]))"
    r"|(?<![^\W_])(?P<cf>[A-Za-z]{6}[0-9]{2}[A-Za-z][0-9]{2}[A-Za-z][0-9]{3}[A-Za-z])"
    r"|(?<![0-9])(?P<cn>[0-9]{17}[0-9Xx]))(?![0-9])"
)

# --- digit chains -------------------------------------------------------------------------------------
# Groups of digits joined by what people type between them: 1-3 spaces/parentheses, or one or two of
# - . / _ , | \ + ~ * and middle dots with up to two spaces around. ":" is left out (times: "10:30").
_GSEP = r"(?:[\s()]{1,3}|[\s()]{0,2}[-./_,|\\+~*\u00b7\u2022\u2219]{1,2}[\s()]{0,2})"
_CHAIN_RE = re.compile(rf"(?<![0-9])[0-9]+(?:{_GSEP}[0-9]+){{0,63}}")
_GROUP_RE = re.compile(r"[0-9]+")
_DIGIT_RE = re.compile(r"[0-9]")
_WS_RE = re.compile(r"[\s()]")
# The word right before a number says what it is; up to three fillers ("number", "is", "#") may stand
# between. Weak account words ("member", "loan") count only with "number"/"no"/"#"/"id" after them.
_LABELS = {
    "acct": "account accounts acct acc a/c ac routing aba rtn bsb iban bban beneficiary",
    "acct_weak": "member membership customer client cif loan policy contract",
    "id": "ssn sin nino ni tin itin ein dni nie nif cpf bsn aadhaar aadhar pan personnummer nir insee "
    "passport license licence taxid",
    "phone": "call phone tel telephone mobile cell cellphone text sms fax whatsapp contact reach dial "
    "callback",
    "ref": "order orders confirmation conf reference ref tracking invoice inv transaction txn ticket case "
    "claim check checks cheque branch store model part sku item product serial flight promo coupon offer "
    "zip postal postcode statement page version build room suite unit apt route form chapter section",
}
_LABEL_WORDS = {w: kind for kind, words in _LABELS.items() for w in words.split()}
# A label glued to the word before it ("myaccount", or "help\u200baccount" once the zero-width is gone);
# phone words are left out ("iphone" is a product).
_SUFFIX_LABELS = sorted(
    (w for w, k in _LABEL_WORDS.items() if len(w) >= 4 and k != "phone"), key=len, reverse=True
)
_LABEL_SUFFIX_RE = re.compile(f"(?:{'|'.join(_SUFFIX_LABELS)})\\Z")
_LABEL_PAIRS = {
    "sort code": "acct", "social security": "id", "soc sec": "id", "national insurance": "id",
    "tax id": "id", "taxpayer id": "id", "tax number": "id",
}  # fmt: skip
_NUMBER_WORDS = frozenset(["number", "numbers", "no", "nr", "num", "#", "id"])
_FILLER_WORDS = _NUMBER_WORDS | frozenset(
    ["is", "was", "of", "my", "me", "at", "on", "ending", "in", "to", "for", "the", "code"]
)
_GAP_CHARS = " \t\n#:;,.-/_()[]'\"=+*~|"
_TOKEN_RE = re.compile(r"a/c|[^\W_]+|#")
_CURRENCY_BEFORE_RE = re.compile(r"[$£€¥₹]\s?\Z|\b(?:usd|eur|gbp|cad|aud)\s?\Z", re.I)
_CURRENCY_AFTER_RE = re.compile(
    r"^\s?(?:[$£€¥₹%]|(?:k|m|mm|bn|usd|eur|gbp|dollars?|euros?|pounds?|bucks|million|billion|thousand)\b)",
    re.I,
)
_GLUED_RE = re.compile(r"(?<![^\W\d_])([^\W\d_]{2,4})[-#]?\Z")  # a short letter prefix glued to the digits
# ...unless it is the head of an IBAN-like string ("GB82WEST1234…" with a wrong length or check)
_IBAN_HEAD_RE = re.compile(r"[A-Za-z]{2}[0-9]{2}[\s.,/_-]{0,2}(?:[A-Za-z]{1,4}[\s.,/_-]{0,2})?\Z")
_AMOUNT_RE = re.compile(
    r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]{1,2})?"  # 1,250,000.00
    r"|[0-9]{1,3}(?:\.[0-9]{3})+(?:,[0-9]{1,2})?"  # 1.250.000,00
    r"|[0-9]{1,9}[.,][0-9]{1,2}"  # 2500.50
)
_TOLL_FREE_AREAS = frozenset({"800", "833", "844", "855", "866", "877", "888"})
_ACCOUNT_MIN_DIGITS = 8  # an unlabelled run this long is an account number (module docstring)
_LABELLED_MIN_DIGITS = 6  # after an account or id word
_PHONE_WORD_MIN_DIGITS = 7  # after "call", "phone"… (a local number without area code)
_GLUED_MAX_DIGITS = 12  # "AB12-3456-7890": a code, not an account, up to this many digits


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


_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 5, 7, 6, 2, 8, 3, 0, 9, 4),
    (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7),
    (9, 4, 5, 3, 1, 2, 6, 8, 7, 0),
    (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5),
    (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def _verhoeff_valid(digits: str) -> bool:
    c = 0
    for i, ch in enumerate(reversed(digits)):
        c = _VERHOEFF_D[c][_VERHOEFF_P[i % 8][int(ch)]]
    return c == 0


def _mod97(alnum: str) -> int:
    return int("".join(str(int(ch, 36)) for ch in alnum)) % 97


def _ssn_valid(d: str) -> bool:
    """US SSN rules (area not 000/666/9xx, group not 00, serial not 0000) or an ITIN (9xx, ITIN group)."""
    area, group, serial = int(d[:3]), int(d[3:5]), int(d[5:])
    if area >= 900:
        return 50 <= group <= 65 or 70 <= group <= 88 or 90 <= group <= 92 or 94 <= group <= 99
    return area not in (0, 666) and group != 0 and serial != 0


def _cpf_valid(d: str) -> bool:
    n = [int(c) for c in d]
    c1 = sum(n[i] * (10 - i) for i in range(9)) * 10 % 11 % 10
    c2 = sum(n[i] * (11 - i) for i in range(10)) * 10 % 11 % 10
    return len(set(d)) > 1 and n[9] == c1 and n[10] == c2


def _nir_valid(d: str) -> bool:
    """French NIR: sex digit, year, month (01-12, or 20+ when unknown), 13 digits and a mod-97 key."""
    month = int(d[3:5])
    return d[0] in "1278" and (1 <= month <= 12 or month >= 20) and 97 - int(d[:13]) % 97 == int(d[13:])


def _personnummer_valid(d: str) -> bool:
    """Swedish personnummer: (YY)YYMMDD + 4 digits, Luhn over the last 10 (day + 60: coordination no.)."""
    core = d[-10:]
    month, day = int(core[2:4]), int(core[4:6]) % 60
    return 1 <= month <= 12 and 1 <= day <= 31 and luhn_valid(core)


def _cnid_valid(s: str) -> bool:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return "10X98765432"[sum(int(s[i]) * weights[i] for i in range(17)) % 11] == s[17].upper()


_CF_ODD = dict(zip("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                   (1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3,
                    6, 8, 12, 14, 16, 10, 22, 25, 24, 23), strict=True))  # fmt: skip


def _cf_valid(s: str) -> bool:
    """Italian codice fiscale: the 16th character is the check of the first 15."""
    s = s.upper()
    even = (int(c) if c.isdigit() else ord(c) - 65 for c in s[1:15:2])
    total = sum(_CF_ODD[c] for c in s[0:15:2]) + sum(even)
    return chr(65 + total % 26) == s[15]


_NINO_UNUSED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})  # never allocated by HMRC


def _nino_prefix_valid(p: str) -> bool:
    p = p.upper()
    return p[0] not in "DFIQUV" and p[1] not in "DFIOQUV" and p not in _NINO_UNUSED


def _dni_valid(prefix: str, digits: str, letter: str) -> bool:
    number = int(str("XYZ".index(prefix.upper())) + digits) if prefix else int(digits.replace(".", ""))
    return "TRWAGMYFPDXBNJZSQVHLCKE"[number % 23] == letter.upper()


def _context(view: str, pos: int) -> str | None:
    """Which kind of word ('acct', 'id', 'phone', 'ref') stands right before ``view[pos]``, if any."""
    window = view[max(0, pos - 40) : pos]
    if len(window) - len(window.rstrip(_GAP_CHARS)) > 3:
        return None
    tokens = _TOKEN_RE.findall(window.lower())
    numbered = False
    for k in range(len(tokens) - 1, max(-1, len(tokens) - 5), -1):
        word = tokens[k]
        kind = _LABEL_PAIRS.get(tokens[k - 1] + " " + word) if k else None
        kind = kind or _LABEL_WORDS.get(word)
        if kind is None and len(word) > 4 and (glued := _LABEL_SUFFIX_RE.search(word)):
            kind = _LABEL_WORDS[glued.group(0)]
        if kind == "acct_weak":
            return "acct" if numbered else None
        if kind or word not in _FILLER_WORDS:
            return kind
        numbered = numbered or word in _NUMBER_WORDS
    return None


def _phone_kind(d: str, cuts: list[int], plus: bool) -> str | None:
    """'phone', 'free' (toll-free / free-phone) or None for the digits ``d`` cut at ``cuts``."""
    n = len(d)
    if plus or (d.startswith("00") and n >= 10 and d[2] != "0"):
        core = d if plus else d[2:]
        if not 8 <= len(core) <= 15:
            return None
        us_free = core[0] == "1" and core[1:4] in _TOLL_FREE_AREAS
        free = plus and (
            us_free or core.startswith(("44800", "44808", "800"))
        )  # "00 800…" is dialled: personal
        return "free" if free else "phone"
    if n == 10 or (n == 11 and d[0] == "1"):
        core, allowed = (d, {3, 6}) if n == 10 else (d[1:], {1, 4, 7})
        if core[0] not in "01" and core[3] not in "01" and set(cuts) <= allowed:
            return "free" if core[:3] in _TOLL_FREE_AREAS else "phone"
    if n in (10, 11) and d[0] == "0" and d[1] != "0":
        return "free" if d.startswith(("0800", "0808", "0500")) else "phone"
    return None


class _Chain:
    """A run of digit groups in the detection view and the decision for each part of it."""

    def __init__(self, view: str, lo: int, hi: int) -> None:
        self.view, self.lo, self.hi = view, lo, hi
        self.groups = [g.span() for g in _GROUP_RE.finditer(view, lo, hi)]
        self.digits = [view[a:b] for a, b in self.groups]
        self.lens = [b - a for a, b in self.groups]
        self.n_digits = sum(self.lens)
        self._ctx: str | None | bool = False
        self._block_ends: set[int] | None = None
        self.toll_free = False

    def sep(self, i: int) -> str:
        """The separator after group ``i``."""
        return self.view[self.groups[i][1] : self.groups[i + 1][0]]

    @property
    def context(self) -> str | None:
        if self._ctx is False:
            self._ctx = _context(self.view, self.lo)
        return self._ctx  # type: ignore[return-value]

    def _plus_before(self, i: int) -> bool:
        lo = self.groups[i][0]
        return self.view[max(0, lo - 3) : lo].replace(" ", "").replace("(", "").endswith("+")

    def _cuts(self, i: int, j: int) -> list[int]:
        cuts, total = [], 0
        for k in range(i, j):
            total += self.lens[k]
            cuts.append(total)
        return cuts

    def _positive_at(self, i: int, left: int) -> tuple[int, str] | None:
        """The PII (last group, token) starting at group ``i`` (``left`` digits from there on): ids, cards,
        phones ("free" for a toll-free number, which is not PII)."""
        d, lens, n = self.digits, self.lens, len(self.digits)
        if left >= 15:
            total, k = 0, i
            while k < n and total < 15:
                total += lens[k]
                k += 1
            if total == 15 and _nir_valid("".join(d[i:k])):
                return k - 1, SSN
        if lens[i] == 18 and _cnid_valid(d[i]):
            return i, SSN
        if left >= 13:
            card, total, joined = None, 0, ""
            for j in range(i, min(n, i + 19)):
                total += lens[j]
                if total > 19:
                    break
                joined += d[j]
                if total >= 13 and luhn_valid(joined):
                    card = j
            if card is not None:
                return card, CARD
        shape = tuple(lens[i : i + 4])
        joined = "".join(d[i : i + 4])
        if shape[:3] == (3, 2, 4) and _ssn_valid(joined[:9]):
            return i + 2, SSN
        spaced = (
            shape[:3] == (3, 3, 3)
            and self.sep(i).strip() in ("", "-")
            and self.sep(i + 1).strip() in ("", "-")
        )
        if spaced and joined[0] not in "08" and luhn_valid(joined[:9]):
            return i + 2, SSN  # Canadian SIN (spaces or dashes: "160.811.998" is an amount)
        if shape == (3, 3, 3, 2) and self.sep(i + 2).strip() == "-" and _cpf_valid(joined):
            return i + 3, SSN  # Brazilian CPF, ddd.ddd.ddd-dd
        dated = shape[:2] in ((6, 4), (8, 4)) and self.sep(i).strip() in "-+"
        if dated and _personnummer_valid(joined[: shape[0] + 4]):
            return i + 1, SSN  # Swedish personnummer
        if shape[:3] == (4, 4, 4) and joined[0] not in "01" and _verhoeff_valid(joined[:12]):
            return i + 2, SSN  # Aadhaar
        return self._phone_at(i)

    def _phone_at(self, i: int) -> tuple[int, str] | None:
        """A phone number fills whole blocks: "01/01/2025 - 01/31/2025" holds no "0101202501"."""
        if self._block_ends is None:
            self._block_ends = {b for _, b in self._blocks()}
        if i > 0 and i - 1 not in self._block_ends:
            return None
        if self.digits[i] == "0" and i + 1 < len(self.digits) and self.sep(i) == ".":
            return None  # "0.100.100.100" is a version, not a trunk "0"
        plus, best, total, digits, cuts = self._plus_before(i), None, 0, "", []
        for j in range(i, len(self.digits)):
            if j > i:
                cuts.append(total)
            total += self.lens[j]
            if total > 15:
                break
            digits += self.digits[j]
            kind = _phone_kind(digits, cuts, plus) if total >= 8 and j in self._block_ends else None
            if kind == "phone" or (kind == "free" and i == 0):  # toll-free leads its run ("3000 800200 0000")
                best = (j, PHONE if kind == "phone" else "free")
        if best and best[1] == PHONE and (self.context in ("acct", "id", "ref") or self.is_code):
            return None  # a labelled number is what its label says; a code is not a phone
        return best

    def spans(self) -> list[tuple[int, int, str]]:
        """(start, end, token) in the view for the parts of the chain that are PII."""
        found: list[tuple[int, int, str]] = []
        i, left, free_groups = 0, self.n_digits, 0
        while i < len(self.digits) and left >= 8:  # the shortest PII here: an 8-digit "+" phone number
            hit = self._positive_at(i, left)
            if hit is None:
                left -= self.lens[i]
                i += 1
                continue
            if hit[1] == "free":
                self.toll_free = True
                free_groups += hit[0] + 1 - i
            else:
                found.append((i, hit[0], hit[1]))
            left -= sum(self.lens[i : hit[0] + 1])
            i = hit[0] + 1
        if found:  # the whole chain goes: what sits next to a card or id (expiry, CVV) is part of it
            out = []
            for k, (a, _, token) in enumerate(found):
                last = found[k + 1][0] - 1 if k + 1 < len(found) else len(self.digits) - 1
                out.append((self.groups[0 if k == 0 else a][0], self.groups[last][1], token))
            return out
        if free_groups == len(self.digits) and self.context not in ("acct", "id"):  # the label wins
            return []
        return self._unlabelled_spans()

    def _whole(self, token: str) -> list[tuple[int, int, str]]:
        return [(self.lo, self.hi, token)]

    def _unlabelled_spans(self) -> list[tuple[int, int, str]]:
        """No card, id or phone: the label before the run decides, then the shape of each block."""
        if self.n_digits < _LABELLED_MIN_DIGITS:
            return []
        ctx = self.context
        if ctx == "acct":
            return self._whole(ACCOUNT)
        if ctx == "id":
            return self._whole(SSN)
        if ctx == "phone" and self.n_digits >= _PHONE_WORD_MIN_DIGITS and not self.toll_free:
            return self._whole(PHONE)
        if ctx == "ref" or self.n_digits < _ACCOUNT_MIN_DIGITS:
            return []
        before = self.view[max(0, self.lo - 8) : self.lo]
        if _CURRENCY_BEFORE_RE.search(before) or _CURRENCY_AFTER_RE.search(self.view[self.hi : self.hi + 12]):
            return []
        if self.is_code:
            return []
        return self._block_spans()

    @property
    def is_code(self) -> bool:
        """A product or reference code: digits glued to a short letter prefix ("AB12-3456-7890")."""
        glued = _GLUED_RE.search(self.view, max(0, self.lo - 8), self.lo)
        if not glued or self.n_digits > _GLUED_MAX_DIGITS or _context(glued.group(1), len(glued.group(1))):
            return False
        return not _IBAN_HEAD_RE.search(self.view, max(0, self.lo - 12), self.lo)

    def _blocks(self) -> list[tuple[int, int]]:
        """Group ranges (first, last) split where the separator has a space: "1,250" is one block."""
        blocks, first = [], 0
        for i in range(len(self.digits) - 1):
            if _WS_RE.search(self.sep(i)):
                blocks.append((first, i))
                first = i + 1
        blocks.append((first, len(self.digits) - 1))
        return blocks

    def _block_kind(self, a: int, b: int) -> str | None:
        """'keep' for a date, ZIP+4, amount, version or year range; 'year' for a year alone."""
        d = self.digits[a : b + 1]
        lens = [len(x) for x in d]
        if max(lens) > 9:  # every shape here has short groups (and int() of 4300+ digits raises)
            return None
        vals = [int(x) for x in d]
        text = self.view[self.groups[a][0] : self.groups[b][1]]
        if len(d) == 1:
            return "year" if lens[0] == 4 and 1950 <= vals[0] <= 2049 else None
        if len(d) == 3 and _is_date(lens, vals):
            return "keep"
        if lens == [5, 4] and text[5] == "-":
            return "keep"  # ZIP+4
        if lens == [4, 4] and all(1900 <= v <= 2099 for v in vals):
            return "keep"  # year range
        if _AMOUNT_RE.fullmatch(text):
            return "keep"
        seps = {self.sep(k) for k in range(a, b)}
        if len(d) >= 3 and seps == {"."} and lens[0] <= 3 and max(lens) <= 4 and min(lens[1:]) <= 2:
            return "keep"  # a version or an address (125.0.2535.67, 10.0.0.5; not 54.0000.0000.0000)
        return None

    def _block_spans(self) -> list[tuple[int, int, str]]:
        blocks = self._blocks()
        kinds: list[str | None] = [self._block_kind(a, b) for a, b in blocks]
        if all(kind == "year" for kind in kinds):  # "2023 2024": a list of years
            return []
        # a year-like group next to other digits is part of them ("3000 2000" is an account number)
        kinds = [None if kind == "year" else kind for kind in kinds]
        for e in range(min(len(blocks), 5) - 1, -1, -1):  # a toll-free number leading the run, over blocks
            b = blocks[e][1]  # ("1 800 555 0199", "(800) 555-0142")
            if _phone_kind("".join(self.digits[: b + 1]), self._cuts(0, b), self._plus_before(0)) == "free":
                kinds[: e + 1] = ["keep"] * (e + 1)
                break
        out: list[tuple[int, int, str]] = []
        k = 0
        while k < len(blocks):
            if kinds[k] is not None:
                k += 1
                continue
            e = k
            while e + 1 < len(blocks) and kinds[e + 1] is None:
                e += 1
            if sum(len(x) for x in self.digits[blocks[k][0] : blocks[e][1] + 1]) >= _ACCOUNT_MIN_DIGITS:
                out.append((self.groups[blocks[k][0]][0], self.groups[blocks[e][1]][1], ACCOUNT))
            k = e + 1
        return out


def _is_date(lens: list[int], vals: list[int]) -> bool:
    a, b, c = vals
    if lens[0] == 4 and lens[1] <= 2 and lens[2] <= 2:
        return 1900 <= a <= 2099 and 1 <= b <= 12 and 1 <= c <= 31
    if lens[0] <= 2 and lens[1] <= 2 and lens[2] in (2, 4):
        year_ok = lens[2] == 2 or 1900 <= c <= 2099
        return year_ok and ((1 <= a <= 12 and 1 <= b <= 31) or (1 <= a <= 31 and 1 <= b <= 12))
    return False


# --- finding the spans --------------------------------------------------------------------------------
def _iban_spans(view: str) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    pos = 0
    while (m := _IBAN_RE.search(view, pos)) is not None:
        length = _IBAN_LENGTHS.get(m.group(1).upper())
        pos = m.start() + 1
        if length is None:
            continue
        need, end = length - 4, m.start(3)
        chars = []
        for k in range(m.start(3), m.end(3)):
            if view[k].isalnum():
                chars.append(view[k])
                end = k + 1
                if len(chars) == need:
                    break
        if len(chars) < need or (end < len(view) and view[end].isalnum()):
            continue
        if _mod97(("".join(chars) + m.group(1) + m.group(2)).upper()) == 1:
            out.append((m.start(), end, ACCOUNT))
            pos = end
    return out


def _lettered_id_spans(view: str) -> list[tuple[int, int, str]]:
    """National ids that carry letters: UK NINO, Spanish DNI/NIE, codice fiscale, Chinese resident id."""
    out = []
    for m in _LETTERED_ID_RE.finditer(view):
        if m.group("nino"):
            suffix = m.group("suffix") or m.group("spaced_suffix")
            ok = _nino_prefix_valid(m.group("nino")) and bool(suffix or _context(view, m.start()) == "id")
        elif letter := m.group("letter") or m.group("spaced_letter"):
            ok = _dni_valid(m.group("nie") or "", m.group("nie_digits") or m.group("dni"), letter)
        else:
            ok = _cf_valid(m.group("cf")) if m.group("cf") else _cnid_valid(m.group("cn"))
        if ok:
            out.append((m.start(), m.end(), SSN))
    return out


def _covered(spans: list[tuple[int, int, str]], lo: int, hi: int) -> bool:
    return any(a <= lo and hi <= b for a, b, _ in spans)


def _find_spans(view: str) -> list[tuple[int, int, str]]:
    """Every PII span of the detection view, overlapping ones merged (the earlier, longer one names it)."""
    spans: list[tuple[int, int, str]] = []
    if "@" in view or (_AT_HINT_RE.search(view) and _DOT_HINT_RE.search(view)):
        spans.extend((m.start(), m.end(), EMAIL) for m in _EMAIL_RE.finditer(view))
    n_digits = len(_DIGIT_RE.findall(view))
    if n_digits >= _LABELLED_MIN_DIGITS:  # the shortest PII with digits has six (a labelled number, a NINO)
        spans.extend(_iban_spans(view))
        spans.extend(_lettered_id_spans(view))
        for m in _CHAIN_RE.finditer(view):
            if m.end() - m.start() >= _LABELLED_MIN_DIGITS and not _covered(spans, m.start(), m.end()):
                spans.extend(_Chain(view, m.start(), m.end()).spans())
    spans.sort(key=lambda s: (s[0], -s[1]))
    merged: list[tuple[int, int, str]] = []
    for a, b, token in spans:
        if merged and a < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]), merged[-1][2])
        else:
            merged.append((a, b, token))
    return merged


def _widen(view: str, a: int) -> int:
    """A phone's opening parenthesis or plus goes with it: "call (415) 555-0132" → "call <PHONE>"."""
    k = a
    while k > 0 and a - k < 3 and view[k - 1] in "(+ ":
        k -= 1
    while k < a and view[k] == " ":
        k += 1
    return k


# --- URLs -----------------------------------------------------------------------------------------------
# A URL pasted into free text: its query string goes whole, as in a referrer (bounded, linear).
# Only ASCII whitespace ends it: a browser encodes the rest, so a raw NBSP is part of what was pasted.
_URL_RE = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z][A-Za-z0-9+.\-]{0,15}://"
    r"(?:&#|[^ \t\n\r\f\v?#]){0,2048}(?:[?#][^ \t\n\r\f\v]{0,4096})?"
)
_QUERY_START_RE = re.compile(r"\?|(?<!&)#")  # "&#64;" is an at-sign, not a fragment
_USERINFO_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]{0,15}://)([^/?#\s]{1,1024})@")


def _drop_query(url: str, counts: Counter[str]) -> str:
    """A URL with its user-info replaced by ``<ACCOUNT>``, its query string and fragment by ``<QUERY>``;
    the path is decoded."""
    m = _USERINFO_RE.match(url)
    if m and m.group(2) != ACCOUNT:  # "https://user:password@host/": credentials in the URL
        counts[ACCOUNT] += 1
        url = m.group(1) + ACCOUNT + "@" + url[m.end() :]
    cut = _QUERY_START_RE.search(url)
    cut = cut.start() if cut else -1
    head = unquote_plus(url if cut < 0 else url[:cut], errors="replace")
    tail = url[cut + 1 :] if cut >= 0 else ""
    if tail == QUERY:  # already dropped (a scrubbed referrer scrubbed again)
        return head + "?" + QUERY
    if tail.strip():
        counts[QUERY] += 1
        return head + "?" + QUERY
    return head


# --- the API ----------------------------------------------------------------------------------------------
def clean_text(text: str) -> str:
    """``text`` with control characters (NUL included) as spaces and zero-width, bidi and other
    invisible format characters removed (a space where one stood between a letter and a digit)."""
    text = _CONTROL_RE.sub(" ", text)
    if _FORMAT_RE.search(text) is None:
        return text
    return _FORMAT_RE.sub("", _FORMAT_SPLIT_RE.sub(lambda m: "" if _in_url(text, m.start()) else " ", text))


def _in_url(text: str, pos: int) -> bool:
    """Whether ``text[pos]`` sits in a URL (where a space would end it and spill the rest out of it)."""
    lo, hi = text.rfind(" ", 0, pos) + 1, text.find(" ", pos)
    return "://" in text[lo : hi if hi >= 0 else len(text)]


def scrub_with_counts(text: str) -> tuple[str, Counter[str]]:
    """Scrub ``text`` and count the placeholders inserted per PII type (for the validation report)."""
    return _scrub(clean_text(text[:MAX_SCRUB_CHARS]), Counter(), urls=True)


def _scrub(text: str, counts: Counter[str], urls: bool) -> tuple[str, Counter[str]]:
    if urls and "://" in text:
        text = _URL_RE.sub(lambda m: _drop_query(m.group(0), counts), text)
    view, start, end = _detection_view(text)
    spans = _find_spans(view)
    if not spans:
        return text, +counts
    out, pos = [], 0
    for a, b, token in spans:
        a = _widen(view, a) if token == PHONE else a
        lo, hi = (a, b) if start is None or end is None else (start[a], end[b - 1])
        if hi <= pos:  # two view spans from one encoded character: already replaced
            continue
        lo = max(lo, pos)
        out.append(text[pos:lo])
        out.append(token)
        counts[token] += 1
        pos = hi
    out.append(text[pos:])
    return "".join(out), +counts


def scrub(text: str) -> str:
    """Return ``text`` with e-mails, IBANs and account numbers, cards, national ids, phones and URL
    credentials replaced by placeholders (see the module docstring for the rules)."""
    return scrub_with_counts(text)[0]


def scrub_referrer_with_counts(url: str) -> tuple[str, Counter[str]]:
    """A referrer URL without its query string and fragment (search engines put the visitor's query
    there: replaced whole by ``<QUERY>``); the rest is percent-decoded and scrubbed like free text."""
    counts: Counter[str] = Counter()
    head = _drop_query(clean_text(url[:MAX_SCRUB_CHARS]).strip(), counts)
    # the decoded path is free text now: a decoded "#" or "?" in it is not a URL's fragment or query
    return _scrub(clean_text(head), counts, urls=False)


def scrub_referrer(url: str) -> str:
    """:func:`scrub_referrer_with_counts` without the counts."""
    return scrub_referrer_with_counts(url)[0]


def contains_pii(text: str) -> bool:
    """True when :func:`scrub` would change ``text`` (beyond invisible characters): tests and audits."""
    return scrub(text) != clean_text(text)
