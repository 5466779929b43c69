"""Bad input to the ``c2i`` commands: one line naming the file (or field) and the rule, exit code 2.

Before: 11 of 27 hostile cases ended in a Python traceback (empty/corrupt parquet, empty or binary
CSV, a directory, bad taxonomy YAML, a binary MSNBC file, train-encoder on a corrupt file) and
``features online`` for an unknown customer exited 0 printing NaNs (benchmarks/reliability_probes.py cli).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clicks2intent.cli import main
from clicks2intent.names import columns as C

GOOD = {C.SESSION_ID: "s1", C.EVENT_TIMESTAMP: "2024-03-01T10:00:00Z", C.PAGE_TYPE: "home"}
TAXONOMIES = {
    "empty": "",
    "list": "- a\n- b\n",
    "unclosed": "labels: [unclosed\n",
    "no_labels": "version: 1\nstatus: draft\n",
    "bad_label": "version: 1\nstatus: draft\nlabels:\n  - {id: 3}\n",
    "binary": "\x00\x01\x02",
}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {
        "empty.parquet": b"",
        "corrupt.parquet": b"PAR1" + b"\x00garbage" * 20 + b"PAR1",
        "empty.csv": b"",
        "binary.csv": bytes(range(256)) * 4,
        "latin1.csv": "session_id,event_timestamp,page_type\ns1,2024-03-01T10:00:00Z,h\xf6me\n".encode(
            "latin-1"
        ),
    }
    paths = {}
    for name, data in out.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    for name, text in TAXONOMIES.items():
        paths[f"tax_{name}"] = tmp_path / f"tax_{name}.yaml"
        paths[f"tax_{name}"].write_text(text)
    paths["events"] = tmp_path / "events.parquet"
    pq.write_table(pa.Table.from_pylist([GOOD]), paths["events"])
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "part.parquet").write_bytes(b"not parquet")
    paths["dir"] = tmp_path / "dir"
    return paths


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str], *expect: str) -> str:
    code = main(argv)  # any exception other than Clicks2IntentError fails the test: a traceback
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in expect:
        assert word in err, (word, err)
    return err


@pytest.mark.parametrize(
    "name", ["empty.parquet", "corrupt.parquet", "empty.csv", "binary.csv", "latin1.csv", "dir"]
)
def test_validate_unreadable_files(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], name: str
) -> None:
    _one_line_error(["validate", str(files[name])], capsys, str(files[name]), "readable_file")


def test_train_encoder_on_a_corrupt_file(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(files["corrupt.parquet"])
    _one_line_error(["train-encoder", "--events", path, "--out", str(tmp_path / "enc")], capsys, path)


def test_ingest_msnbc_binary(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(files["binary.csv"])
    _one_line_error(["ingest", "msnbc", path, "--out", str(tmp_path / "m.parquet")], capsys, path)


@pytest.mark.parametrize("name", list(TAXONOMIES))
def test_bad_taxonomy_yaml(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    tax = str(files[f"tax_{name}"])
    argv = [
        "taxonomy",
        "review",
        "--taxonomy",
        tax,
        "--events",
        str(files["events"]),
        "--out",
        str(tmp_path / "r.md"),
    ]
    _one_line_error(argv, capsys, tax)


def test_features_build_names_the_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_error(["features", "build", "--data", "/nope", "--out", str(tmp_path / "f")], capsys, "/nope")


def test_features_online_without_a_world_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tiles and the service's Feast prefix come from the world the features were built with."""
    argv = ["features", "online", "--repo", str(tmp_path), "--features", str(tmp_path / "features")]
    _one_line_error(argv, capsys, str(tmp_path / "features" / "world.yaml"), "c2i features build")


@pytest.mark.slow
def test_features_online_unknown_customer_says_so(pipeline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "features",
        "online",
        "--repo",
        str(pipeline / "feature_repo"),
        "--features",
        str(pipeline / "features"),
        "--customer-id",
        "no-such-customer",
    ]
    _one_line_error(argv, capsys, "no-such-customer", "no online features")


@pytest.mark.slow
def test_features_online_unknown_service_says_so(pipeline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["features", "online", "--repo", str(pipeline / "feature_repo"), "--features",
            str(pipeline / "features"), "--service", "no_such_service"]  # fmt: skip
    _one_line_error(argv, capsys, "no_such_service", "tile_ranker_v1")  # the known ones are listed


@pytest.mark.slow
def test_features_online_known_customer_still_works(
    pipeline: Path, ids: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["features", "online", "--repo", str(pipeline / "feature_repo"), "--features",
            str(pipeline / "features"), "--customer-id", ids["customer"]]  # fmt: skip
    assert main(argv) == 0
    assert ids["customer"] in capsys.readouterr().out
