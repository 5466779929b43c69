"""Reliability probes: hostile inputs into the contract, the PII scrubber and the CLI, counted per outcome.

    python benchmarks/reliability_probes.py contract --files 320   # malformed CSV/parquet → validate_file
    python benchmarks/reliability_probes.py pii                     # seeded PII in every free-text column
    python benchmarks/reliability_probes.py cli                     # bad input to the c2i commands
    python benchmarks/reliability_probes.py all

Each probe prints one table row: tried, reports (the input was read and every row accounted for),
clean errors (a ``Clicks2IntentError``: one line, exit 2), tracebacks (any other exception),
hangs (over ``--per-file-s``), leaks (a seeded secret found in an output), lost (row counts that do
not add up). The reference beside them is the rule itself: every count but ``tried``, ``reports`` and
``clean errors`` must be 0. Deterministic (``--seed``). Not a timed test: tests/reliability/ holds
the bounded versions that ``make test`` runs.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from clicks2intent.data.contract import validate_file  # noqa: E402
from clicks2intent.errors import Clicks2IntentError  # noqa: E402
from clicks2intent.names import columns as C  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOOD_ROW = {
    C.SESSION_ID: "s1",
    C.EVENT_TIMESTAMP: "2024-03-01T10:00:00Z",
    C.PAGE_TYPE: "home",
    C.VISITOR_ID: "v1",
    C.CHANNEL: "web",
    C.DWELL_SECONDS: "3.5",
    C.SEARCH_QUERY: "mortgage rates",
    C.DEVICE: "mobile",
    C.REFERRER: "https://www.google.com/",
}
# Seeded secrets: plain and obfuscated e-mails, cards, IBANs, phones, SSNs.
SECRETS = {
    "email": "john.doe@gmail.com",
    "email_dot_at": "john dot doe at gmail dot com",
    "email_brackets": "jane[at]example[dot]org",
    "email_parens": "jane (at) example (dot) org",
    "card": "4111 1111 1111 1111",
    "card_dots": "4111.1111.1111.1111",
    "iban": "GB82WEST12345698765432",
    "iban_spaced": "GB82 WEST 1234 5698 7654 32",
    "phone": "(415) 555-0132",
    "ssn": "123-45-6789",
}


class Hang(Exception):
    pass


def _alarm(_signum: int, _frame: object) -> None:
    raise Hang()


# --- contract: malformed files ----------------------------------------------------------------------
def _csv(rows: list[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False)
    return buf.getvalue().encode()


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def malformed_files(n: int, seed: int) -> list[tuple[str, bytes]]:
    """``n`` deterministic hostile inputs: broken encodings, quoting, structure, values and sizes."""
    rng = random.Random(seed)
    good_csv = _csv([GOOD_ROW] * 3)
    good_pq = _parquet(pa.Table.from_pylist([GOOD_ROW] * 3))
    values = [
        "", " ", "\x00", "abc\x00", "\u202eevil", "9999-12-31T00:00:00Z", "1000-01-01T00:00:00Z",
        "2024-03-01 10:00 PST", "2024-03-01 10:00 EST", "now", "today", "NaN", "inf", "-1", "1e309",
        "2024-13-45", "'; drop table", "x" * 120_000, "é" * 50, "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
        "1700000000", "2024-03-01T10:00:00+25:00", "web\n", "APP", "\t", '"', "a,b", "😀" * 10,
    ]  # fmt: skip
    fixed: list[tuple[str, bytes]] = [
        ("empty.csv", b""),
        ("empty.parquet", b""),
        ("header_only.csv", good_csv.splitlines()[0] + b"\n"),
        ("newlines.csv", b"\n\n\n"),
        ("binary.csv", bytes(rng.randrange(256) for _ in range(2000))),
        ("binary.parquet", bytes(rng.randrange(256) for _ in range(2000))),
        ("latin1.csv", good_csv.replace(b"home", "h\xf6me".encode("latin-1"))),
        ("utf16.csv", good_csv.decode().encode("utf-16")),
        ("bom.csv", b"\xef\xbb\xbf" + good_csv),
        ("bad_quote.csv", good_csv + b'"s2,"2024-03-01,home\n'),
        ("unterminated.csv", good_csv + b'"' + b"x" * 100),
        ("ragged.csv", good_csv + b"a,b,c,d,e,f,g,h,i,j,k,l,m,n\n"),
        ("semicolon.csv", good_csv.replace(b",", b";")),
        ("truncated.parquet", good_pq[: len(good_pq) // 2]),
        ("no_footer.parquet", good_pq[:-8]),
        ("zero_rows.parquet", _parquet(pa.Table.from_pylist([GOOD_ROW]).slice(0, 0))),
        ("no_columns.parquet", _parquet(pa.table({}))),
        (
            "nested.parquet",
            _parquet(
                pa.table(
                    {
                        C.SESSION_ID: [{"a": 1}],
                        C.EVENT_TIMESTAMP: [[1, 2]],
                        C.PAGE_TYPE: [{"x": "home"}],
                    }
                )
            ),
        ),
        (
            "int_types.parquet",
            _parquet(pa.table({C.SESSION_ID: [1, 2], C.EVENT_TIMESTAMP: [1, 2], C.PAGE_TYPE: [3, 4]})),
        ),
        (
            "binary_cols.parquet",
            _parquet(
                pa.table(
                    {
                        C.SESSION_ID: pa.array([b"\xff\xfe"], pa.binary()),
                        C.EVENT_TIMESTAMP: pa.array([b"x"], pa.binary()),
                        C.PAGE_TYPE: pa.array([b"\x00"], pa.binary()),
                    }
                )
            ),
        ),
        (
            "ts_seconds_far.parquet",
            _parquet(
                pa.table(
                    {
                        C.SESSION_ID: ["a", "b"],
                        C.EVENT_TIMESTAMP: pa.array([-(10**11), 10**11], pa.timestamp("s")),
                        C.PAGE_TYPE: ["home", "home"],
                    }
                )
            ),
        ),
        (
            "dwell_text.parquet",
            _parquet(pa.Table.from_pylist([{**GOOD_ROW, C.DWELL_SECONDS: "lots"}])),
        ),
        ("long_query.csv", _csv([{**GOOD_ROW, C.SEARCH_QUERY: "a" * 150_000 + " john.doe@gmail.com"}])),
        ("long_run.csv", _csv([{**GOOD_ROW, C.SEARCH_QUERY: "x" * 20_000}])),
    ]
    out = list(fixed)
    kinds = ["csv_value", "pq_value", "csv_bytes", "pq_bytes", "csv_drop_col", "pq_dict"]
    for i in range(max(0, n - len(fixed))):
        kind = kinds[i % len(kinds)]
        col = rng.choice(list(GOOD_ROW))
        val = rng.choice(values)
        if kind == "csv_value":
            out.append((f"r{i}_value.csv", _csv([GOOD_ROW, {**GOOD_ROW, col: val}])))
        elif kind == "pq_value":
            out.append(
                (f"r{i}_value.parquet", _parquet(pa.Table.from_pylist([GOOD_ROW, {**GOOD_ROW, col: val}])))
            )
        elif kind == "csv_bytes":
            data = bytearray(good_csv)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            out.append((f"r{i}_flip.csv", bytes(data)))
        elif kind == "pq_bytes":
            data = bytearray(good_pq)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            out.append((f"r{i}_flip.parquet", bytes(data)))
        elif kind == "csv_drop_col":
            row = {k: v for k, v in GOOD_ROW.items() if k != col}
            out.append((f"r{i}_drop.csv", _csv([row])))
        else:
            table = pa.Table.from_pylist([GOOD_ROW, {**GOOD_ROW, col: val}])
            out.append((f"r{i}_dict.parquet", _parquet(_dict_encode(table))))
    return out[:n] if n >= len(fixed) else out


def _dict_encode(table: pa.Table) -> pa.Table:
    return pa.table({name: table[name].dictionary_encode() for name in table.column_names})


def probe_contract(n: int, seed: int, per_file_s: float) -> Counter[str]:
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    signal.signal(signal.SIGALRM, _alarm)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in malformed_files(n, seed):
            path = Path(tmp) / name
            path.write_bytes(data)
            counts["tried"] += 1
            t0 = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, per_file_s)
            try:
                result = validate_file(path, out_path=Path(tmp) / "out.parquet")
                result.report.to_text()
                r = result.report
                counts["reports"] += 1
                if r.n_valid + r.n_rejected != r.n_input or len(result.rejected) != r.n_rejected:
                    counts["lost"] += 1
                    examples.setdefault("lost", []).append(name)
            except Hang:
                counts["hangs"] += 1
                examples.setdefault("hangs", []).append(name)
            except Clicks2IntentError as err:
                counts["clean errors"] += 1
                if "\n" in str(err).strip() and "rejected" not in str(err):
                    counts["multi-line errors"] += 1
            except Exception as err:  # what a user would see as a traceback
                counts["tracebacks"] += 1
                examples.setdefault("tracebacks", []).append(f"{name}: {type(err).__name__}: {str(err)[:80]}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            counts["_seconds"] += time.monotonic() - t0
    for k, v in examples.items():
        print(f"  {k}: {v[:8]}", file=sys.stderr)
    return counts


# --- PII: seeded secrets in every free-text column ---------------------------------------------------
def _leaked(secret: str, text: str) -> bool:
    """The secret, or its digits (>= 6 in a row), or its e-mail local part, is still in ``text``."""
    digits = "".join(ch for ch in secret if ch.isdigit())
    text_digits = "".join(ch for ch in text if ch.isdigit())
    if secret.lower() in text.lower():
        return True
    if len(digits) >= 6 and digits in text_digits:
        return True
    local = secret.replace("[", " ").replace("(", " ").split()[0].split("@")[0].split(".")[0]
    return local.lower() in ("john", "jane") and local.lower() in text.lower()


def probe_pii() -> Counter[str]:
    counts: Counter[str] = Counter()
    examples = []
    columns = [C.SEARCH_QUERY, C.REFERRER, C.DEVICE, C.PAGE_TYPE]
    rows, seeded = [], []
    for col in columns:
        for kind, secret in SECRETS.items():
            for form in ("plain", "nul", "url"):
                value = {
                    "plain": f"help {secret} please",
                    "nul": f"help {secret}\x00",
                    "url": "https://www.google.com/search?q=" + secret.replace(" ", "+").replace("@", "%40"),
                }[form]
                rows.append({**GOOD_ROW, C.SESSION_ID: f"s{len(rows)}", col: value})
                seeded.append((col, kind, form, secret))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "pii.parquet"
        pq.write_table(pa.Table.from_pylist(rows), src)
        out = Path(tmp) / "clean.parquet"
        result = validate_file(src, out_path=out)
        clean = pd.read_parquet(out).set_index(C.SESSION_ID)
        text_report = result.report.to_text()
    for i, (col, kind, form, secret) in enumerate(seeded):
        counts["tried"] += 1
        sid = f"s{i}"
        if sid not in clean.index:
            counts["rejected"] += 1
            continue
        value = clean.loc[sid, col]
        if isinstance(value, str) and _leaked(secret, value):
            counts["leaks"] += 1
            examples.append(f"{col}/{kind}/{form}: {value[:60]!r}")
        else:
            counts["clean"] += 1
        if _leaked(secret, text_report):
            counts["leaks in report"] += 1
    print(f"  leaks: {examples[:12]}", file=sys.stderr)
    return counts


# --- CLI: bad input to each command ------------------------------------------------------------------
def cli_cases(tmp: Path) -> list[tuple[str, list[str]]]:
    (tmp / "empty.parquet").write_bytes(b"")
    (tmp / "corrupt.parquet").write_bytes(b"PAR1" + b"\x00garbage" * 20 + b"PAR1")
    (tmp / "empty.csv").write_bytes(b"")
    (tmp / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (tmp / "events.txt").write_text("x")
    taxonomies = {
        "tax_empty.yaml": "",
        "tax_list.yaml": "- a\n- b\n",
        "tax_badyaml.yaml": "labels: [unclosed\n",
        "tax_nolabels.yaml": "version: v1\n",
        "tax_badlabel.yaml": "version: v1\nlabels:\n  - {id: 3}\n",
        "tax_binary.yaml": "\x00\x01\x02",
    }
    for name, text in taxonomies.items():
        (tmp / name).write_text(text)
    ev = str(tmp / "events.parquet")
    pq.write_table(pa.Table.from_pylist([GOOD_ROW]), ev)
    cases = [
        ("validate empty parquet", ["validate", str(tmp / "empty.parquet")]),
        ("validate corrupt parquet", ["validate", str(tmp / "corrupt.parquet")]),
        ("validate empty csv", ["validate", str(tmp / "empty.csv")]),
        ("validate binary csv", ["validate", str(tmp / "binary.csv")]),
        ("validate missing file", ["validate", str(tmp / "nope.parquet")]),
        ("validate unsupported type", ["validate", str(tmp / "events.txt")]),
        ("validate a directory", ["validate", str(tmp)]),
        ("embed missing encoder", ["embed", "--encoder", str(tmp / "noenc"), "--events", ev, "--out", str(tmp / "e.parquet")]),
        ("train-encoder corrupt events", ["train-encoder", "--events", str(tmp / "corrupt.parquet"), "--out", str(tmp / "enc")]),
        ("features build --data /nope", ["features", "build", "--data", "/nope", "--out", str(tmp / "f")]),
        ("features online unknown customer", ["features", "online", "--repo", os.environ.get("C2I_PROBE_REPO", "feature_repo"), "--customer-id", "no-such-customer-xyz"]),
        ("features online missing repo", ["features", "online", "--repo", str(tmp / "norepo"), "--customer-id", "c1"]),
        ("summary missing dir", ["summary", str(tmp / "noart")]),
        ("evaluate msnbc missing", ["evaluate", "--dataset", "msnbc", str(tmp / "no.seq")]),
        ("ingest msnbc binary", ["ingest", "msnbc", str(tmp / "binary.csv"), "--out", str(tmp / "m.parquet")]),
    ]  # fmt: skip
    for name in taxonomies:
        cases.append(
            (
                f"taxonomy review {name}",
                [
                    "taxonomy",
                    "review",
                    "--taxonomy",
                    str(tmp / name),
                    "--events",
                    ev,
                    "--out",
                    str(tmp / "r.md"),
                ],
            )
        )
        cases.append(
            (
                f"taxonomy label {name}",
                ["taxonomy", "label", "--taxonomy", str(tmp / name), "--events", ev, "--out", str(tmp / "l.parquet"),
                 "--base-url", "http://127.0.0.1:9/v1", "--model", "x", "--max-retries", "0"],
            )
        )  # fmt: skip
    return cases


def probe_cli(timeout_s: float) -> Counter[str]:
    counts: Counter[str] = Counter()
    c2i = Path(sys.executable).with_name("c2i")
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in cli_cases(Path(tmp)):
            counts["tried"] += 1
            try:
                p = subprocess.run(
                    [str(c2i), *argv], capture_output=True, text=True, timeout=timeout_s, cwd=str(ROOT),
                    env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                counts["hangs"] += 1
                print(f"  hang: {name}", file=sys.stderr)
                continue
            err = p.stderr.strip().splitlines()
            if "Traceback" in p.stderr:
                counts["tracebacks"] += 1
                print(f"  traceback: {name}: {err[-1][:100] if err else ''}", file=sys.stderr)
            elif p.returncode == 0:
                counts["exit 0"] += 1
                print(f"  exit 0: {name}: {p.stdout.strip().splitlines()[:2]}", file=sys.stderr)
            elif p.returncode == 2:
                counts["clean errors"] += 1
                print(f"  clean: {name}: {err[-1][:110] if err else ''}", file=sys.stderr)
            else:
                counts[f"exit {p.returncode}"] += 1
                print(f"  exit {p.returncode}: {name}: {err[-1][:100] if err else ''}", file=sys.stderr)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probe", choices=["contract", "pii", "cli", "all"])
    ap.add_argument("--files", type=int, default=320)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--per-file-s", type=float, default=20.0)
    ap.add_argument("--cli-timeout-s", type=float, default=120.0)
    args = ap.parse_args()
    probes = ["contract", "pii", "cli"] if args.probe == "all" else [args.probe]
    for probe in probes:
        t0 = time.monotonic()
        if probe == "contract":
            counts = probe_contract(args.files, args.seed, args.per_file_s)
        elif probe == "pii":
            counts = probe_pii()
        else:
            counts = probe_cli(args.cli_timeout_s)
        counts.pop("_seconds", None)
        row = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        print(f"{probe:<9} ({time.monotonic() - t0:.0f} s): {row}", flush=True)


if __name__ == "__main__":
    main()
