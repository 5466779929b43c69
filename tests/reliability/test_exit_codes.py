"""The exit codes are documented once (``clicks2intent.errors.EXIT_CODES``) and shown where users look."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from clicks2intent.cli import main, os_error_line
from clicks2intent.errors import EXIT_CODES, EXIT_IO, exit_codes_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_the_one_in_errors() -> None:
    assert exit_codes_table() in README.read_text(), (
        "regenerate the README's table: errors.exit_codes_table()"
    )


def test_c2i_help_lists_every_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit codes (every command):" in out
    for code, _ in EXIT_CODES:
        assert f"  {code:>3}  " in out


def test_an_os_error_outside_our_checks_is_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a_directory"
    (out / "x").mkdir(parents=True)  # --rejects names a directory: the rename over it fails
    bad = tmp_path / "events.csv"
    bad.write_text("session_id,event_timestamp,page_type\n,2024-03-01T10:00:00Z,home\n")
    code = main(["validate", str(bad), "--rejects", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_IO and len(err.splitlines()) == 1 and str(out) in err, err
    line = os_error_line(FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/y"))
    assert line == "/x/y: No such file or directory (ENOENT)"
