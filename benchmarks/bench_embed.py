"""Benchmark: ``c2i embed`` end to end (ONNX and torch runtimes) vs bare forwards on the same shapes, + training.

    python benchmarks/bench_embed.py                       # 250k synthetic sessions, ~1M events
    python benchmarks/bench_embed.py --events artifacts/data/events.parquet --channel web

Figures printed (one run, same machine, same batches):

* end to end: sessions/s of ``c2i embed`` run as its own process, timed from process start to the
  output parquet written (imports, model load, read, featurise, batches, the encoder, write), once per
  runtime: ``--runtime auto`` (the default: ONNX Runtime on CPU, no torch in the process) and
  ``--runtime torch`` (the eager model), interleaved, best of N each;
* to the output written: the same runs, timed to the output file's last write (its mtime: no
  interpreter exit), and their CPU seconds beside the bare forward's (steadier under shared load);
* in-process: :func:`clicks2intent.encoder.embed.embed_file` (torch) and
  :func:`clicks2intent.encoder.runtime.embed_file` (ONNX) with their phase times;
* bare: sessions/s of a plain ``torch.nn.TransformerEncoder`` with the encoder's size (d_model, heads,
  d_ff, layers, pre-norm, GELU) run on random inputs with exactly the pipeline's batch shapes — with
  the encoder's own attention (causal mask for a causal encoder) and, for reference, bidirectional
  with a padding mask; the ratio end to end / bare shows the pipeline's overhead (issue 12's target:
  the default path >= 0.7 of this PyTorch reference). The bare batches are checked equal to the batch
  shapes both runtimes report they ran;
* bare ONNX: ``encoder.onnx`` (the whole inference graph: input embeddings, Transformer, pooling,
  head) in ONNX Runtime on the same batches, its inputs built before the timing: the ONNX job against
  its own runtime's model shows the job's overhead apart from the model's speed;
* bare, spinning: the same PyTorch forward in a child process whose OpenMP threads spin while they wait
  (``OMP_WAIT_POLICY=ACTIVE``, PyTorch's own default). The project and the reference above run torch
  PASSIVE (spinning made 2-thread training 13x slower on this shared 2-core box); on a quiet box the
  spinning forward is about twice as fast, so the ratio against it is printed too, and so is the
  like-for-like one: ``c2i embed`` run with ``OMP_WAIT_POLICY=ACTIVE`` (ONNX Runtime's threads spin
  then too) against the spinning bare;
* training: sessions/s of self-supervised training (both views, forward + backward + step);
* online: latency of ``SessionEmbedder.embed_session`` for one session (p50 / p99).

CUDA is used when present (``--device``). This is a benchmark, not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Before torch loads OpenMP (see clicks2intent/encoder.py): spinning workers ruin timings on a shared CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from clicks2intent.encoder import runtime as onnx_runtime  # noqa: E402
from clicks2intent.encoder.embed import EMBED_CHUNK, SessionEmbedder, embed_file, pick_device  # noqa: E402
from clicks2intent.encoder.model import EncoderConfig  # noqa: E402
from clicks2intent.encoder.train import TrainConfig, save_encoder_dir, train_encoder  # noqa: E402
from clicks2intent.names import columns as C  # noqa: E402

QUERIES = ["mortgage rates", "credit card cashback", "open savings account", "lost card", "routing number",
           "auto loan calculator", "ira rollover", "business checking", "wire transfer fee", "zelle limit"]  # fmt: skip


def synthetic_events(n_sessions: int, max_events: int, seed: int = 0, mean_events: float = 4.0) -> pa.Table:
    """Contract events: 60 page types, geometric session lengths (mean ``mean_events``, capped), every modality."""
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.geometric(1 / mean_events, n_sessions), max_events)
    n = int(lengths.sum())
    session = np.repeat(np.arange(n_sessions), lengths)
    pos = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    start = (
        pd.Timestamp("2026-01-01", tz="UTC").value // 1000
        + np.sort(rng.integers(0, 90 * 86_400, n_sessions)) * 1_000_000
    )
    dwell = rng.lognormal(3, 1, n)
    ts = start[session] + (pos * 40_000_000)  # 40 s apart: simple and exact
    pages = np.array([f"page_{i:02d}" for i in range(60)], dtype=object)[rng.integers(0, 60, n)]
    has_query = rng.random(n) < 0.05
    queries = np.where(has_query, np.array(QUERIES, dtype=object)[rng.integers(0, len(QUERIES), n)], None)
    devices = np.array(["desktop", "mobile", "tablet"], dtype=object)[rng.integers(0, 3, n_sessions)][session]
    return pa.table(
        {
            # zero-padded: ids sort as the rows do, as in every file validation writes (c2i embed reads such a
            # file in slices; bench_embed's references run the same slices)
            C.SESSION_ID: pa.array(
                np.char.add("s", np.char.zfill(session.astype(str), len(str(n_sessions)))).astype(object),
                pa.string(),
            ),
            C.EVENT_TIMESTAMP: pa.array(ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            C.PAGE_TYPE: pa.array(pages, pa.string()),
            C.CHANNEL: pa.array(np.full(n, "web", dtype=object), pa.string()),
            C.DWELL_SECONDS: pa.array(
                np.where(rng.random(n) < 0.1, np.nan, dwell), pa.float64(), from_pandas=True
            ),
            C.SEARCH_QUERY: pa.array(queries, pa.string()),
            C.DEVICE: pa.array(devices, pa.string()),
        }
    )


def pipeline_chunks(embedder: object, events_path: Path, channel: str | None) -> list[object]:
    """The featurised chunks the embed job runs, in its order: the job's own partitions of the file
    (slices of a session-sorted file), each cut into EMBED_CHUNK sessions."""
    from clicks2intent.encoder.pipeline import _partitions, input_columns

    chunks = []
    with tempfile.TemporaryDirectory() as spill:
        for table in _partitions(events_path, input_columns(events_path), 5_000_000, channel, Path(spill)):
            arrays = embedder.featurise(table)
            chunks += [
                arrays.slice(first, first + EMBED_CHUNK) for first in range(0, len(arrays), EMBED_CHUNK)
            ]
    return chunks


def bare_forward_inputs(
    embedder: SessionEmbedder, events_path: Path, channel: str | None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random ``[B, L, d]`` inputs and padding masks with exactly the pipeline's batches."""
    cfg, device = embedder.config, embedder.device
    inputs = []
    for chunk in pipeline_chunks(embedder, events_path, channel):
        for idx in embedder.batches(chunk):
            lengths = torch.from_numpy(chunk.lengths[idx]).to(device)
            width = int(lengths.max())
            x = torch.randn(len(idx), width, cfg.d_model, device=device)
            inputs.append((x, torch.arange(width, device=device).unsqueeze(0) >= lengths.unsqueeze(1)))
    return inputs


@torch.inference_mode()
def bare_forward_seconds(
    cfg: EncoderConfig, device: torch.device, inputs: list[tuple[torch.Tensor, torch.Tensor]], causal: bool
) -> tuple[float, float]:
    """One pass of a plain TransformerEncoder of the encoder's size over the given batches (wall, CPU s)."""
    layer = torch.nn.TransformerEncoderLayer(
        cfg.d_model,
        cfg.n_heads,
        cfg.d_ff,
        dropout=cfg.dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    bare = torch.nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False).to(device).eval()
    _sync(device)
    t0, cpu0 = time.perf_counter(), time.process_time()
    for x, pad in inputs:
        if causal:
            future = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=device).triu(1)
            bare(x, mask=future, is_causal=True)
        else:
            bare(x, src_key_padding_mask=pad)
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - cpu0


def bare_onnx_inputs(
    onnx: onnx_runtime.OnnxEmbedder, events_path: Path, channel: str | None
) -> list[dict[str, np.ndarray]]:
    """The ONNX graph's inputs of every batch the pipeline runs (featurised and built before timing)."""
    feeds = []
    for chunk in pipeline_chunks(onnx, events_path, channel):
        feeds += [f for _, f in onnx.batch_feeds(chunk)]
    return feeds


def bare_onnx_seconds(
    onnx: onnx_runtime.OnnxEmbedder, feeds: list[dict[str, np.ndarray]]
) -> tuple[float, float]:
    """One pass of ``encoder.onnx`` in ONNX Runtime over prepared batches (wall, CPU s)."""
    run = onnx.session.run
    t0, cpu0 = time.perf_counter(), time.process_time()
    for f in feeds:
        run(None, f)
    return time.perf_counter() - t0, time.process_time() - cpu0


def bare_onnx_parallel_seconds(
    onnx: onnx_runtime.OnnxEmbedder, feeds: list[dict[str, np.ndarray]], streams: int
) -> tuple[float, float]:
    """``streams`` batches at once, one thread each (what the job does): wall and CPU seconds."""
    from concurrent.futures import ThreadPoolExecutor

    run = onnx.session.run
    t0, cpu0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(lambda f: run(None, f), feeds))
    return time.perf_counter() - t0, time.process_time() - cpu0


def bare_onnx_intra_op_seconds(encoder_dir: Path, feeds: list[dict[str, np.ndarray]], threads: int) -> float:
    """One batch at a time on ``threads`` intra-op threads (the job before it ran batches in parallel)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(encoder_dir / "encoder.onnx"), options, providers=["CPUExecutionProvider"]
    )
    t0 = time.perf_counter()
    for f in feeds:
        session.run(None, f)
    return time.perf_counter() - t0


@torch.inference_mode()
def bare_forward_parallel_seconds(
    cfg: EncoderConfig, device: torch.device, inputs: list[tuple[torch.Tensor, torch.Tensor]], streams: int
) -> float:
    """The bare PyTorch forward with ``streams`` batches at once, one torch thread each (torch releases
    the GIL inside its kernels): the reference run the way the job runs ONNX Runtime."""
    from concurrent.futures import ThreadPoolExecutor

    layer = torch.nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, dropout=cfg.dropout,
                                             activation="gelu", batch_first=True, norm_first=True)  # fmt: skip
    bare = torch.nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False).to(device).eval()
    before = torch.get_num_threads()
    torch.set_num_threads(1)

    def one(item: tuple[torch.Tensor, torch.Tensor]) -> None:
        with torch.inference_mode():
            x, _ = item
            future = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=device).triu(1)
            bare(x, mask=future, is_causal=True)

    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(streams) as pool:
            list(pool.map(one, inputs))
        return time.perf_counter() - t0
    finally:
        torch.set_num_threads(before)


def end_to_end_seconds(
    encoder_dir: Path,
    events_path: Path,
    out: Path,
    args: argparse.Namespace,
    threads: int,
    runtime: str,
    wait_policy: str = "PASSIVE",
    plugin: str | None = None,
) -> tuple[float, float, float]:
    """``c2i embed --runtime runtime`` as a fresh process: seconds from process start to its exit, to the
    output file's last write (its mtime), and the CPU seconds it used (all threads). ``wait_policy`` is
    its ``OMP_WAIT_POLICY`` (ACTIVE: ONNX Runtime's and torch's threads spin while they wait)."""
    cmd = [sys.executable, "-m", "clicks2intent", "embed", "--encoder", str(encoder_dir), "--events",
           str(events_path), "--out", str(out), "--batch-size", str(args.batch_size), "--device", args.device,
           "--runtime", runtime, "--quiet"]  # fmt: skip
    if args.channel:
        cmd += ["--channel", args.channel]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY=wait_policy)
    if plugin:  # another checkout's package (its plugin/ directory) first on the path: an A/B in one run
        env["PYTHONPATH"] = plugin
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0, t0 = time.time(), time.perf_counter()
    done = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not out.exists():
        raise SystemExit(f"c2i embed wrote no {out}")
    used = "onnx" if "(onnx runtime)" in done.stdout else "torch"
    if (
        runtime != "auto"
        and used != runtime
        or runtime == "auto"
        and used != "onnx"
        and args.device != "cuda"
    ):
        print(f"note: c2i embed --runtime {runtime} ran {used}: {done.stderr.strip()[-300:]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return seconds, out.stat().st_mtime - wall0, cpu


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def spinning_bare_seconds(
    shapes: list[tuple[int, int]], cfg: EncoderConfig, repeats: int, threads: int
) -> float:
    """The bare PyTorch forward at its best on a quiet box: a child process with OpenMP threads that spin
    while they wait (``OMP_WAIT_POLICY=ACTIVE``, PyTorch's default). The project runs torch PASSIVE (on
    the shared 2-core machine spinning made training 13x slower), and so does the bare reference above;
    this one says how fast the same forward can be when nothing else wants the cores."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"shapes": shapes, "config": cfg.to_dict(), "repeats": repeats}, f)
    env = dict(os.environ, OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS=str(threads))
    out = subprocess.run(
        [sys.executable, __file__, "--spinning-bare-child", f.name],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    Path(f.name).unlink()
    return float(json.loads(out.stdout.strip().splitlines()[-1])["best_s"])


def _spinning_bare_child(spec_path: str) -> None:
    """Child of :func:`spinning_bare_seconds`: best of N bare forwards (the encoder's attention), as JSON."""
    spec = json.loads(Path(spec_path).read_text())
    cfg = EncoderConfig.from_dict(spec["config"])
    inputs = []
    for b, width in spec["shapes"]:
        lengths = torch.randint(1, width + 1, (b,))
        lengths[0] = width
        inputs.append(
            (torch.randn(b, width, cfg.d_model), torch.arange(width).unsqueeze(0) >= lengths.unsqueeze(1))
        )
    cpu = torch.device("cpu")
    best = min(bare_forward_seconds(cfg, cpu, inputs, cfg.causal)[0] for _ in range(spec["repeats"]))
    print(json.dumps({"best_s": best}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sessions", type=int, default=250_000, help="synthetic sessions (ignored with --events)"
    )
    ap.add_argument("--mean-events", type=float, default=4.0, help="mean events per synthetic session")
    ap.add_argument("--max-events", type=int, default=64, help="events per synthetic session at most")
    ap.add_argument("--events", help="use this events parquet instead of synthetic events")
    ap.add_argument("--channel", choices=list(C.CHANNELS))
    ap.add_argument("--encoder", help="trained encoder dir; default: train one here (--train-steps)")
    ap.add_argument(
        "--train-steps", type=int, default=60, help="training steps timed (and used for the encoder)"
    )
    ap.add_argument("--batch-size", type=int, default=1024, help="embedding batch size")
    ap.add_argument("--repeats", type=int, default=3, help="best of N for both timings")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary events/encoder/output files")
    ap.add_argument(
        "--baseline-plugin",
        help="another checkout's plugin/ dir: its c2i embed end to end too, interleaved (an A/B in one run)",
    )
    ap.add_argument(
        "--skip-torch-runtime",
        action="store_true",
        help="no c2i embed --runtime torch runs (end to end and in-process): the 1M-session run's time",
    )
    ap.add_argument("--spinning-bare-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.spinning_bare_child:
        _spinning_bare_child(args.spinning_bare_child)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    work = Path(tempfile.mkdtemp(prefix="c2i-bench-"))
    events_path = Path(args.events) if args.events else work / "events.parquet"
    if not args.events:
        pq.write_table(
            synthetic_events(args.sessions, args.max_events, mean_events=args.mean_events), events_path
        )
    meta = pq.ParquetFile(events_path).metadata
    print(
        f"events: {events_path} ({meta.num_rows:,} rows); device {device}; torch threads {torch.get_num_threads()}"
    )

    figures: dict[str, float | int | str] = {"device": str(device), "threads": torch.get_num_threads()}
    if args.encoder:
        encoder_dir = Path(args.encoder)
    else:
        table = pq.read_table(events_path)
        t_cfg = TrainConfig(max_steps=args.train_steps, device=str(device), max_train_sessions=50_000)
        result = train_encoder(table, EncoderConfig(), t_cfg, channel=args.channel, progress=False)
        encoder_dir = save_encoder_dir(result.checkpoint, work / "encoder")
        figures["train_sessions_per_s"] = round(result.train_sessions_per_second, 1)
        print(
            f"training: {result.train_sessions_per_second:,.0f} sessions/s ({args.train_steps} steps, batch 256)"
        )

    embedder = SessionEmbedder.load(encoder_dir, device=str(device), batch_size=args.batch_size)
    causal = embedder.config.causal
    bare_inputs = bare_forward_inputs(embedder, events_path, args.channel)
    threads = torch.get_num_threads()
    onnx = onnx_runtime.OnnxEmbedder.load(encoder_dir, batch_size=args.batch_size, threads=threads)
    onnx_feeds = bare_onnx_inputs(onnx, events_path, args.channel)
    load_before = os.getloadavg()
    print(f"load average before: {' '.join(f'{v:.2f}' for v in load_before)}")
    inf = float("inf")
    best, e2e_s, written_s, e2e_cpu, bare_s, bare_cpu, bidir_s = None, inf, inf, inf, inf, inf, inf
    best_onnx, t_e2e_s, t_written_s, t_e2e_cpu, ort_s, ort_cpu = None, inf, inf, inf, inf, inf
    spin_e2e_s = inf
    ort_par_s, ort_intra_s, torch_par_s, base_e2e_s = inf, inf, inf, inf
    for r in range(args.repeats):  # interleaved, best of N each: load drift hits all alike
        e2e = end_to_end_seconds(encoder_dir, events_path, work / f"e2e{r}.parquet", args, threads, "auto")
        e2e_s, written_s, e2e_cpu = min(e2e_s, e2e[0]), min(written_s, e2e[1]), min(e2e_cpu, e2e[2])
        e2e = end_to_end_seconds(
            encoder_dir, events_path, work / f"e2es{r}.parquet", args, threads, "auto", "ACTIVE"
        )
        spin_e2e_s = min(spin_e2e_s, e2e[0])
        if args.baseline_plugin:
            e2e = end_to_end_seconds(
                encoder_dir, events_path, work / f"e2eb{r}.parquet", args, threads, "auto",
                plugin=args.baseline_plugin,
            )  # fmt: skip
            base_e2e_s = min(base_e2e_s, e2e[0])
        if not args.skip_torch_runtime:
            e2e = end_to_end_seconds(
                encoder_dir, events_path, work / f"e2et{r}.parquet", args, threads, "torch"
            )
            t_e2e_s, t_written_s, t_e2e_cpu = (
                min(t_e2e_s, e2e[0]),
                min(t_written_s, e2e[1]),
                min(t_e2e_cpu, e2e[2]),
            )
            stats = embed_file(
                encoder_dir, events_path, work / f"emb{r}.parquet", batch_size=args.batch_size,
                channel=args.channel, device=str(device), progress=False,
            )  # fmt: skip
            best = stats if best is None or stats.seconds < best.seconds else best
        stats = onnx_runtime.embed_file(
            encoder_dir, events_path, work / f"embo{r}.parquet", batch_size=args.batch_size, channel=args.channel,
            progress=False, threads=threads,
        )  # fmt: skip
        best_onnx = stats if best_onnx is None or stats.seconds < best_onnx.seconds else best_onnx
        wall, cpu = bare_forward_seconds(embedder.config, device, bare_inputs, causal)
        bare_s, bare_cpu = min(bare_s, wall), min(bare_cpu, cpu)
        bidir_s = min(bidir_s, bare_forward_seconds(embedder.config, device, bare_inputs, False)[0])
        wall, cpu = bare_onnx_seconds(onnx, onnx_feeds)
        ort_s, ort_cpu = min(ort_s, wall), min(ort_cpu, cpu)
        ort_par_s = min(ort_par_s, bare_onnx_parallel_seconds(onnx, onnx_feeds, threads)[0])
        ort_intra_s = min(ort_intra_s, bare_onnx_intra_op_seconds(encoder_dir, onnx_feeds, threads))
        if causal:
            torch_par_s = min(
                torch_par_s, bare_forward_parallel_seconds(embedder.config, device, bare_inputs, threads)
            )
    assert best_onnx is not None
    best = best or best_onnx  # --skip-torch-runtime: the torch figures below are then infinite / absent
    bare_shapes = [(x.shape[0], x.shape[1]) for x, _ in bare_inputs]
    ort_shapes = [tuple(f["rows"].shape[:2]) for f in onnx_feeds]
    for name, shapes in (
        ("torch", best.batch_shapes),
        ("onnx", best_onnx.batch_shapes),
        ("bare onnx", ort_shapes),
    ):
        if bare_shapes != shapes:  # the references must run exactly the pipeline's batches
            raise SystemExit(f"bare forward shapes differ from the {name} pipeline's ({len(bare_shapes)} vs "
                             f"{len(shapes)} batches)")  # fmt: skip
    spin_s = spinning_bare_seconds(bare_shapes, embedder.config, args.repeats, threads)
    n = best.n_sessions
    e2e_rate, bare_rate, bidir_rate = n / e2e_s, n / bare_s, n / bidir_s
    spin_rate, spin_e2e_rate = n / spin_s, n / spin_e2e_s
    t_e2e_rate, ort_rate = n / t_e2e_s, n / ort_s
    # Issue 28: the default job against the FASTEST bare forward of the same model on the same batches
    # (PyTorch's fused C++ encoder, PASSIVE or spinning threads, or the whole graph in ONNX Runtime),
    # each side at its best (c2i embed with passive or spinning threads).
    candidates = {
        f"torch, one batch at a time on {threads} threads": bare_rate,
        "torch, spinning threads": spin_rate,
        f"torch, {threads} batches at once": n / torch_par_s,
        "onnx runtime, one batch at a time on one thread": ort_rate,
        f"onnx runtime, one batch at a time on {threads} intra-op threads": n / ort_intra_s,
        f"onnx runtime, {threads} batches at once": n / ort_par_s,
    }
    fastest = max(candidates.items(), key=lambda kv: kv[1])
    e2e_best_rate = max(e2e_rate, spin_e2e_rate)
    mean_len = float(np.mean([s for _, s in best.batch_shapes])) if best.batch_shapes else 0.0
    figures.update(
        sessions=n,
        events=best.n_events,
        end_to_end_sessions_per_s=round(e2e_rate, 1),
        end_to_end_runtime="auto (onnx)",
        end_to_end_torch_runtime_sessions_per_s=round(t_e2e_rate, 1),
        in_process_sessions_per_s=round(best.sessions_per_second, 1),
        in_process_onnx_sessions_per_s=round(best_onnx.sessions_per_second, 1),
        bare_onnx_sessions_per_s=round(ort_rate, 1),
        bare_onnx_cpu_s=round(ort_cpu, 3),
        ratio_torch_runtime=round(t_e2e_rate / bare_rate, 3),
        ratio_onnx_vs_bare_onnx=round(e2e_rate / ort_rate, 3),
        end_to_end_torch_to_output_written_s=round(t_written_s, 3),
        end_to_end_torch_cpu_s=round(t_e2e_cpu, 3),
        bare_forward_sessions_per_s=round(bare_rate, 1),
        bare_attention="causal" if causal else "bidirectional",
        bare_bidirectional_sessions_per_s=round(bidir_rate, 1),
        ratio=round(e2e_rate / bare_rate, 3),
        ratio_vs_bidirectional=round(e2e_rate / bidir_rate, 3),
        bare_forwards_sessions_per_s={k: round(v, 1) for k, v in candidates.items()},
        baseline_checkout_end_to_end_sessions_per_s=round(n / base_e2e_s, 1)
        if args.baseline_plugin
        else None,
        fastest_bare_forward=fastest[0],
        fastest_bare_sessions_per_s=round(fastest[1], 1),
        end_to_end_best_sessions_per_s=round(e2e_best_rate, 1),
        ratio_vs_fastest_bare=round(e2e_best_rate / fastest[1], 3),
        bare_spinning_sessions_per_s=round(spin_rate, 1),
        ratio_vs_spinning_bare=round(e2e_rate / spin_rate, 3),
        end_to_end_spinning_sessions_per_s=round(spin_e2e_rate, 1),
        ratio_spinning_vs_spinning_bare=round(spin_e2e_rate / spin_rate, 3),
        end_to_end_to_output_written_s=round(written_s, 3),
        end_to_end_cpu_s=round(e2e_cpu, 3),
        bare_forward_cpu_s=round(bare_cpu, 3),
        cpu_ratio=round(bare_cpu / e2e_cpu, 3),
        batches=len(best.batch_shapes),
        mean_padded_length=round(mean_len, 2),
        load_average_1m_before_after=[round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        **{f"in_process_{k}_s": round(v, 3) for k, v in best.phase_seconds.items()},
        **{f"in_process_onnx_{k}_s": round(v, 3) for k, v in best_onnx.phase_seconds.items()},
    )
    print(
        f"c2i embed end to end (process start to output written; default runtime auto = onnx): {n:,} sessions "
        f"in {e2e_s:.2f}s = {e2e_rate:,.0f} sessions/s\nc2i embed --runtime torch end to end: {t_e2e_s:.2f}s = "
        f"{t_e2e_rate:,.0f} sessions/s\nin-process onnx embed_file: {best_onnx.seconds:.2f}s = "
        f"{best_onnx.sessions_per_second:,.0f} sessions/s"
        f"\nin-process embed_file: {best.seconds:.2f}s = {best.sessions_per_second:,.0f}"
        f" sessions/s\nbare TransformerEncoder forward ({figures['bare_attention']}), same {len(best.batch_shapes)} "
        f"batches: {bare_s:.2f}s = {bare_rate:,.0f} sessions/s (bidirectional + padding mask: {bidir_rate:,.0f}/s)"
        f"\nbare ONNX Runtime forward of encoder.onnx (whole graph), same batches: {ort_s:.2f}s = "
        f"{ort_rate:,.0f} sessions/s"
        f"\nbare TransformerEncoder forward with spinning OpenMP threads (child process, OMP_WAIT_POLICY=ACTIVE, "
        f"its best on a quiet box): {spin_s:.2f}s = {spin_rate:,.0f} sessions/s"
        f"\nratio end to end / bare: {e2e_rate / bare_rate:.2f} (vs bidirectional bare: {e2e_rate / bidir_rate:.2f}; "
        f"vs the spinning bare: {e2e_rate / spin_rate:.2f})"
        f"\nc2i embed end to end with spinning threads too (OMP_WAIT_POLICY=ACTIVE): {spin_e2e_s:.2f}s = "
        f"{spin_e2e_rate:,.0f} sessions/s; ratio / the spinning bare: {spin_e2e_rate / spin_rate:.2f}"
        f"\nratio end to end --runtime torch / bare: {t_e2e_rate / bare_rate:.2f}; onnx end to end / bare ONNX: "
        f"{e2e_rate / ort_rate:.2f}"
        f"\nend to end to the output written (its mtime): {written_s:.2f}s = {n / written_s:,.0f} sessions/s"
        f"\nCPU seconds (all threads; steadier than wall on a shared machine): end to end {e2e_cpu:.2f}, bare "
        f"{bare_cpu:.2f}, ratio bare / end to end {bare_cpu / e2e_cpu:.2f}; --runtime torch end to end "
        f"{t_e2e_cpu:.2f}; bare ONNX {ort_cpu:.2f}"
        + "".join(f"\n  bare forward, {k}: {v:,.0f} sessions/s" for k, v in candidates.items())
        + (
            f"\nc2i embed end to end, baseline checkout ({args.baseline_plugin}): {base_e2e_s:.2f}s = "
            f"{n / base_e2e_s:,.0f} sessions/s"
            if args.baseline_plugin
            else ""
        )
        + f"\nfastest bare forward: {fastest[0]}, {fastest[1]:,.0f} sessions/s; c2i embed at its best "
        f"{e2e_best_rate:,.0f} sessions/s: ratio {e2e_best_rate / fastest[1]:.2f}"
        f"\nload average (1 min) before / after: {figures['load_average_1m_before_after']}"
    )
    print("in-process phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in best.phase_seconds.items()))
    print(
        "in-process onnx phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in best_onnx.phase_seconds.items())
    )

    sample = pq.read_table(events_path).slice(0, 4000).to_pandas()
    sessions = [g.drop(columns=[C.SESSION_ID]).to_dict("records") for _, g in sample.groupby(C.SESSION_ID)][
        :200
    ]
    for s in sessions[:20]:
        embedder.embed_session(s)
    lat = []
    for s in sessions:
        t0 = time.perf_counter()
        embedder.embed_session(s)
        lat.append((time.perf_counter() - t0) * 1e3)
    figures["online_p50_ms"] = round(float(np.percentile(lat, 50)), 3)
    figures["online_p99_ms"] = round(float(np.percentile(lat, 99)), 3)
    print(f"online embed_session: p50 {figures['online_p50_ms']} ms, p99 {figures['online_p99_ms']} ms")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
    if args.keep:
        print(f"files kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
