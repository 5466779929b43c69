"""PII scrubbing: every seeded kind of PII is replaced, ordinary text is left alone."""

from __future__ import annotations

import pytest

from clicks2intent.data.pii import contains_pii, luhn_valid, scrub, scrub_with_counts


@pytest.mark.parametrize(
    ("text", "placeholder", "secret"),
    [
        ("contact jane.doe@example.com about loan", "<EMAIL>", "jane.doe@example.com"),
        ("card 4111 1111 1111 1111 declined", "<CARD>", "4111 1111 1111 1111"),
        ("card 4111-1111-1111-1111", "<CARD>", "4111-1111-1111-1111"),
        ("5500005555555559 limit", "<CARD>", "5500005555555559"),
        ("my ssn 123-45-6789", "<SSN>", "123-45-6789"),
        ("call me 415-555-0132 tomorrow", "<PHONE>", "415-555-0132"),
        ("call (415) 555 0132", "<PHONE>", "(415) 555 0132"),
        ("routing 021000021 acct 12345678", "<ACCOUNT>", "12345678"),
    ],
)
def test_scrub_replaces_each_kind(text: str, placeholder: str, secret: str) -> None:
    out = scrub(text)
    assert placeholder in out
    assert secret not in out
    assert not any(ch.isdigit() for ch in out.replace("<", "").replace(">", "")) or placeholder == "<EMAIL>"


def test_non_luhn_16_digits_is_still_scrubbed_as_account() -> None:
    out = scrub("number 4111111111111112")
    assert "<CARD>" not in out and "<ACCOUNT>" in out


@pytest.mark.parametrize(
    "text", ["mortgage rates 2026", "30 year fixed", "apr 5.9%", "credit card cashback", ""]
)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert scrub(text) == text
    assert not contains_pii(text)


def test_counts_per_type() -> None:
    _, counts = scrub_with_counts("a@b.co and c@d.org, ssn 123-45-6789")
    assert counts["<EMAIL>"] == 2 and counts["<SSN>"] == 1


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
