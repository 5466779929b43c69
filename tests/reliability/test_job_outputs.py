"""Job outputs: one writer at a time, complete or absent, and no leftovers after a killed run.

Before (hostile probe, issue 26): two ``c2i embed`` jobs with the same ``--out`` shared one
``<out>.tmp``; in 3 tries one job exited 0 while the file held the other job's rows, or was unreadable.
Killed jobs left ``c2i-embed-*`` dirs and an 8 MB ``.spill-*`` that the re-run did not remove. Now every
job writer goes through :mod:`clicks2intent.common.files`: a lock per output (a second writer: exit 4,
one line), a temporary name per job renamed when complete, and leftovers of dead owners removed by
the next run. The SIGKILL tests kill the real job at a known point (a patched step sends SIGKILL to its
own process) and compare the re-run with an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clicks2intent.cli import main
from clicks2intent.common.files import (
    LOCK_SUFFIX,
    atomic_output,
    exclusive,
    job_temp_dir,
    owner_alive,
    owner_tag,
    remove_stale,
)
from clicks2intent.data.contract import validate_events, write_events
from clicks2intent.errors import EXIT_BUSY, OutputBusyError
from clicks2intent.intent.taxonomy import OTHER_ID, Label, Taxonomy
from clicks2intent.names import columns as C
from clicks2intent.names.paths import ArtifactLayout

C2I = str(Path(sys.executable).with_name("c2i"))


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _ours(directory: Path) -> list[str]:
    """What a job may leave beside its outputs: temporary files, scratch dirs and lock files, by the
    names this version and the previous one use (``*.tmp``, ``c2i-embed-*``, ``[.embed].spill-*``)."""
    return sorted(
        p.name for p in directory.rglob("*")
        if p.name.endswith((".tmp", LOCK_SUFFIX))
        or p.name.startswith((".spill-", ".embed-spill-", "c2i-embed-"))
    )  # fmt: skip


# --- the helper ------------------------------------------------------------------------------------


def test_a_second_writer_is_refused_with_one_line_naming_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    busy = rf"process {os.getpid()} is writing it \(lock .*out\.parquet\.lock\)"
    with exclusive(out):
        with pytest.raises(OutputBusyError, match=busy), atomic_output(out) as tmp:
            tmp.write_text("second")  # pragma: no cover - refused before
        assert not out.exists()
    with atomic_output(out) as tmp:  # released: the next writer goes ahead
        tmp.write_text("first")
    assert out.read_text() == "first" and _ours(tmp_path) == []


def test_an_output_is_complete_or_left_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    out.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the job failed")
    assert out.read_text() == "old" and _ours(tmp_path) == []


def test_leftovers_of_dead_owners_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    dead = _dead_pid()
    mine = owner_tag()
    ticks = mine.split("-")[2]
    stale = [
        tmp_path / f".out.parquet.c2i-{dead}-{ticks}-0123abcd.tmp",  # a killed job's temporary file
        tmp_path / f".out.parquet.c2i-{os.getpid()}-{int(ticks) + 1}-0123abcd.tmp",  # our pid, reused
    ]
    for p in stale:
        p.write_text("x")
    (tmp_path / f".spill-c2i-{dead}-{ticks}-89abcdef").mkdir()
    live = tmp_path / f".out.parquet.{mine}.tmp"  # a job of this process, still running
    live.write_text("x")
    other = tmp_path / ".out.parquet.tmp"  # not a name of ours: never touched
    other.write_text("x")
    assert owner_alive(live.name) and owner_alive(stale[0].name) is False and owner_alive(other.name) is None

    removed = remove_stale(tmp_path, ".out.parquet.")
    assert sorted(removed) == sorted(stale)
    spill = job_temp_dir(tmp_path, ".spill-")  # the next job's scratch dir; the dead one's is gone
    assert [p.name for p in tmp_path.glob(".spill-*")] == [spill.name]
    assert live.exists() and other.exists()


def test_validate_refuses_an_output_another_job_is_writing(
    tmp_path: Path, make_session_events: Callable[..., pd.DataFrame], capsys: pytest.CaptureFixture[str]
) -> None:
    events = write_events(validate_events(make_session_events(1)).events, tmp_path / "events.parquet")
    out = tmp_path / "clean.parquet"
    out.write_bytes(b"the other job's output")
    with exclusive(out):
        code = main(["validate", str(events), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_BUSY and len(err.splitlines()) == 1 and "clean.parquet.lock" in err, err
    assert out.read_bytes() == b"the other job's output"


# --- two real writers ------------------------------------------------------------------------------


def _embed(layout: ArtifactLayout, events: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [C2I, "embed", "--encoder", str(layout.encoder), "--events", str(events), "--out", str(out),
         "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_two_embed_jobs_with_one_output_never_swap_rows(pipeline: Path, tmp_path: Path) -> None:
    """Two jobs with different inputs started together, three times: each run ends with the complete
    rows of a job that exited 0; the other job either also finished (after it) or was refused."""
    layout = ArtifactLayout(pipeline)
    full = pd.read_parquet(layout.events)
    inputs = {"all": layout.events, "half": tmp_path / "half.parquet"}
    sessions = sorted(full[C.SESSION_ID].unique())
    write_events(full[full[C.SESSION_ID].isin(sessions[: len(sessions) // 2])], inputs["half"])
    expected = {}
    for name, events in inputs.items():
        solo = tmp_path / f"solo_{name}.parquet"
        assert _embed(layout, events, solo).wait(120) == 0
        expected[name] = set(pd.read_parquet(solo)[C.SESSION_ID])
    out = tmp_path / "shared" / "session_embeddings.parquet"
    outcomes = []
    for _ in range(3):
        out.unlink(missing_ok=True)
        jobs = {name: _embed(layout, events, out) for name, events in inputs.items()}
        done = {name: (job.wait(120), job.stderr.read()) for name, job in jobs.items()}
        codes = {name: code for name, (code, _) in done.items()}
        outcomes.append(codes)
        assert set(codes.values()) <= {0, EXIT_BUSY}, done
        assert 0 in codes.values(), done
        for code, err in done.values():
            if code == EXIT_BUSY:
                assert "is writing it" in err and "Traceback" not in err, err
        got = set(pd.read_parquet(out)[C.SESSION_ID])  # readable, and one job's complete rows
        assert any(got == expected[name] for name, code in codes.items() if code == 0), (codes, len(got))
        assert _ours(out.parent) == []
    print(f"exit codes of (all, half) in 3 runs: {outcomes}")


# --- SIGKILL at each job ---------------------------------------------------------------------------

# Run the real command in this process after patching one step to SIGKILL the process at its n-th call
# (before the step runs, or right after it returned).
KILL_AT = """
import os, signal, sys, importlib
module, name, n, when = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
target = importlib.import_module(module)
*owner, name = name.split(".")  # a function of the module, or a method of one of its classes
for part in owner:
    target = getattr(target, part)
real, calls = getattr(target, name), [0]

def killing(*args, **kwargs):
    calls[0] += 1
    if calls[0] == n and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    out = real(*args, **kwargs)
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return out

setattr(target, name, killing)
from clicks2intent.cli import main
sys.exit(main(sys.argv[5:]))
"""


def _killed(at: tuple[str, str, int], argv: list[str], when: str = "before") -> None:
    module, name, n = at
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILL_AT), module, name, str(n), when, *argv],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def _c2i(argv: list[str]) -> None:
    done = subprocess.run([C2I, *argv], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def _frame(path: Path) -> pd.DataFrame:
    """Rows in a fixed order (a job's row order follows its partitions)."""
    frame = pd.read_parquet(path)
    keys = [frame.columns[0], *([C.EVENT_TIMESTAMP] if C.EVENT_TIMESTAMP in frame.columns else [])]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


@pytest.mark.slow
def test_embed_killed_mid_write_leaves_nothing_the_rerun_keeps(pipeline: Path, tmp_path: Path) -> None:
    layout = ArtifactLayout(pipeline)
    out_dir = tmp_path / "run"
    # more events than --max-rows-in-memory: spilled to session-hash partitions on disk, one chunk each
    argv = ["embed", "--encoder", str(layout.encoder), "--events", str(layout.events), "--quiet"]
    argv += ["--max-rows-in-memory", "500"]
    _c2i([*argv, "--out", str(tmp_path / "reference.parquet")])
    # killed while writing its second chunk: a temporary output, a spill dir and the lock file remain
    _killed(
        ("clicks2intent.encoder.pipeline", "embeddings_table", 2),
        [*argv, "--out", str(out_dir / "e.parquet")],
    )
    left = _ours(out_dir)
    assert any(n.endswith(".tmp") for n in left) and any("embed-" in n for n in left), left
    assert not (out_dir / "e.parquet").exists()
    _c2i([*argv, "--out", str(out_dir / "e.parquet")])
    assert _ours(out_dir) == []
    pd.testing.assert_frame_equal(_frame(out_dir / "e.parquet"), _frame(tmp_path / "reference.parquet"))


@pytest.mark.slow
def test_features_build_killed_mid_run_leaves_nothing_the_rerun_keeps(pipeline: Path, tmp_path: Path) -> None:
    layout = ArtifactLayout(pipeline)
    argv = ["features", "build", "--data", str(layout.data), "--embeddings", str(layout.embeddings),
            "--intents", str(layout.session_intents), "--intent-model", str(layout.intent),
            "--buckets", "3"]  # fmt: skip
    _c2i([*argv, "--out", str(tmp_path / "reference")])
    out = tmp_path / "run" / "features"
    _killed(("clicks2intent.features.build", "_visitor_step", 1), [*argv, "--out", str(out)])
    left = _ours(out.parent)
    assert any(n.startswith(".spill-") for n in left) and any(n.endswith(".tmp") for n in left), left
    assert not any(out.glob("*.parquet"))  # no output looks done
    _c2i([*argv, "--out", str(out)])
    assert _ours(out.parent) == []
    for path in sorted((tmp_path / "reference").glob("*.parquet")):
        pd.testing.assert_frame_equal(_frame(out / path.name), _frame(path), obj=path.name)


@pytest.mark.slow
def test_label_killed_while_writing_leaves_nothing_the_rerun_keeps(
    make_session_events: Callable[..., pd.DataFrame], fault_server: Any, tmp_path: Path
) -> None:
    events = write_events(validate_events(make_session_events(2)).events, tmp_path / "events.parquet")
    tax = Taxonomy(
        version=1, status="draft", model="m",
        labels=[Label("mortgage", "Mortgage", "Home loans.", []), Label("savings", "Savings", "Savings.", []),
                Label(OTHER_ID, "Other", "Anything else.", [])],
    ).save(tmp_path / "taxonomy.yaml")  # fmt: skip
    argv = ["taxonomy", "label", "--events", str(events), "--taxonomy", str(tax), "--sample", "0",
            "--base-url", fault_server.base_url, "--model", fault_server.model, "--shortlist", "off",
            "--cache", str(tmp_path / "cache.sqlite")]  # fmt: skip
    _c2i([*argv, "--out", str(tmp_path / "reference" / "labels.parquet")])
    out = tmp_path / "run" / "labels.parquet"
    out.parent.mkdir()
    # killed while writing the labels: rows written, the parquet footer not yet
    _killed(("pyarrow.parquet", "ParquetWriter.close", 1), [*argv, "--out", str(out)])
    assert not out.exists(), "a half-written labels file where the labels belong"
    assert any(n.endswith(".tmp") for n in _ours(out.parent)), _ours(out.parent)
    _c2i([*argv, "--out", str(out)])
    assert _ours(out.parent) == []
    pd.testing.assert_frame_equal(_frame(out), _frame(tmp_path / "reference" / "labels.parquet"))


def test_lock_released_when_its_holder_thread_fails(tmp_path: Path) -> None:
    """A job that fails inside its output's lock releases it (the next writer is not refused)."""
    out = tmp_path / "x.txt"
    errors: list[BaseException] = []

    def failing() -> None:
        try:
            with exclusive(out):
                raise ValueError("boom")
        except ValueError as err:
            errors.append(err)

    thread = threading.Thread(target=failing)
    thread.start()
    thread.join()
    assert errors and not Path(str(out) + LOCK_SUFFIX).exists()
    with exclusive(out):
        pass
