"""``c2i train-encoder`` and ``c2i embed``: the encoder stage's commands.

Each handler parses its flags, makes one library call (:mod:`clicks2intent.encoder`) and prints the
result. The flags of ``train-encoder`` are the fields of :class:`EncoderConfig` and :class:`TrainConfig`
(``dest`` = field name); a flag left out keeps the dataclass default.

Registration imports nothing heavy (the configs are torch-free): ``c2i embed --runtime onnx`` runs in a
process that never imports torch or pandas, so the torch modules are imported by the handlers that
use them.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from clicks2intent.encoder.config import NEXT_WEIGHTINGS, POOLINGS, EncoderConfig, TrainConfig
from clicks2intent.encoder.pipeline import EmbedStats
from clicks2intent.encoder.runtime import RUNTIMES
from clicks2intent.errors import Clicks2IntentError, ConfigError
from clicks2intent.names import columns as C

if TYPE_CHECKING:
    from clicks2intent.encoder.train import TrainResult

# ``--engine`` choices (features.ray_jobs.ENGINES, whose module imports pandas: spelled out here and
# checked equal by tests/encoder/test_onnx_runtime.py)
ENGINES = ("local", "ray")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``c2i train-encoder`` and ``c2i embed``."""
    _register_train(subparsers)
    _register_embed(subparsers)


# --- c2i train-encoder --------------------------------------------------------------------------


def configs_from_args(args: argparse.Namespace) -> tuple[EncoderConfig, TrainConfig]:
    """The two configs from parsed ``train-encoder`` flags (unset flags keep the defaults)."""

    def overrides(cls: type) -> dict[str, object]:
        return {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}

    try:
        return EncoderConfig(**overrides(EncoderConfig)), TrainConfig(**overrides(TrainConfig))
    except Clicks2IntentError:
        raise
    except ValueError as exc:  # EncoderConfig checks its own fields with plain ValueErrors
        raise ConfigError(str(exc)) from exc


def training_summary(result: TrainResult, out: str | Path) -> str:
    """The line ``c2i train-encoder`` prints."""
    m = result.checkpoint.metadata
    return (
        f"trained on {m['n_train_sessions']} sessions ({m['n_val_sessions']} validation, "
        f"{m['n_holdout_sessions']} held out) for {m['steps']} steps ({m['stop_reason']}); "
        f"val loss {m['initial_val_loss']:.3f} -> {m['best_val_loss']:.3f} (best at step {m['best_step']}); "
        f"{m['train_sessions_per_second']:,.0f} training sessions/s on {m['device']} -> {Path(out)}"
    )


def train_from_args(args: argparse.Namespace) -> TrainResult:
    """The one library call behind ``c2i train-encoder`` (also used by ``training/train_encoder.py``)."""
    from clicks2intent.data.world import load_world, resolve_world_path
    from clicks2intent.encoder.train import train_encoder_file

    encoder_config, train_config = configs_from_args(args)
    world_path = resolve_world_path(getattr(args, "world", None), Path(args.events).parent)
    return train_encoder_file(
        args.events,
        args.out,
        encoder_config,
        train_config,
        channel=args.channel,
        progress=not args.quiet,
        threads=args.threads,
        # A data directory without a declaration (e.g. an MSNBC ingest) trains on its page types as they are.
        world=load_world(world_path) if world_path.is_file() or getattr(args, "world", None) else None,
    )


def _train_command(args: argparse.Namespace) -> int:
    print(training_summary(train_from_args(args), args.out))
    return 0


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-encoder", help="self-supervised training of the session encoder")
    p.add_argument("--events", required=True, help="events parquet in the clickstream contract")
    p.add_argument(
        "--world",
        default=None,
        help="the bank's world.yaml: the events must hold its page types (default: $C2I_WORLD, else beside --events)",
    )
    p.add_argument("--out", required=True, help="encoder directory to write (checkpoint.pt, encoder.ts)")
    p.add_argument("--channel", choices=list(C.CHANNELS), help="train on events of this channel only")
    p.add_argument("--epochs", type=int, help=f"default {TrainConfig.epochs}")
    p.add_argument("--max-steps", dest="max_steps", type=int, help="stop after this many optimiser steps")
    p.add_argument(
        "--max-minutes", dest="max_minutes", type=float, help="stop after this much wall-clock time"
    )
    p.add_argument("--batch-size", dest="batch_size", type=int, help=f"default {TrainConfig.batch_size}")
    p.add_argument("--lr", type=float, help=f"default {TrainConfig.lr}")
    p.add_argument(
        "--val-fraction", dest="val_fraction", type=float, help="latest share of sessions for validation"
    )
    p.add_argument(
        "--holdout-fraction",
        dest="holdout_fraction",
        type=float,
        help="latest share never trained on (evaluation)",
    )
    p.add_argument("--max-train-sessions", dest="max_train_sessions", type=int, help="most recent N sessions")
    p.add_argument("--patience", type=int, help="evaluations without improvement before early stopping")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--device", help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--d-model", dest="d_model", type=int, help=f"default {EncoderConfig.d_model}")
    p.add_argument("--n-layers", dest="n_layers", type=int, help=f"default {EncoderConfig.n_layers}")
    p.add_argument("--n-heads", dest="n_heads", type=int, help=f"default {EncoderConfig.n_heads}")
    p.add_argument("--d-ff", dest="d_ff", type=int, help=f"default {EncoderConfig.d_ff}")
    p.add_argument(
        "--embedding-dim", dest="embedding_dim", type=int, help=f"default {EncoderConfig.embedding_dim}"
    )
    p.add_argument("--max-len", dest="max_len", type=int, help="events kept per session (the last ones)")
    p.add_argument(
        "--pooling", choices=POOLINGS, help=f"session vector pooling (default {EncoderConfig.pooling})"
    )
    p.add_argument(
        "--next-weighting",
        dest="next_weighting",
        choices=NEXT_WEIGHTINGS,
        help=f"next-event loss: every target alike (event) or the mean per batch (default {TrainConfig.next_weighting})",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train_command)


# --- c2i embed ----------------------------------------------------------------------------------


def embed_summary(stats: EmbedStats, out: str | Path) -> str:
    """The line ``c2i embed`` prints."""
    return (
        f"embedded {stats.n_sessions} sessions ({stats.n_events} events, {stats.n_partitions} partition(s)) "
        f"in {stats.seconds:.1f}s = {stats.sessions_per_second:,.0f} sessions/s -> {out}"
    )


def _embed_command(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if args.engine == "ray":
        from clicks2intent.cli.features import ray_options
        from clicks2intent.features.ray_jobs import RayOptions, ray_embed_file

        defaults = RayOptions()  # the flags default to None so that registering them needs no pandas
        for flag, field in (("ray_address", "address"), ("ray_cpus", "num_cpus"), ("ray_actors", "actors")):
            if getattr(args, flag) is None:
                setattr(args, flag, getattr(defaults, field))

        stats = ray_embed_file(
            args.encoder,
            args.events,
            args.out,
            batch_size=args.batch_size,
            channel=args.channel,
            device=args.device,
            ray=ray_options(args),
            runtime=args.runtime,
        )
        per_node = ", ".join(f"{node[:8]} {n}" for node, n in sorted(stats.nodes.items()))
        print(
            embed_summary(stats, args.out)
            + f" (ray, {args.ray_actors} actors; sessions per node: {per_node})"
        )
        return 0
    from clicks2intent.encoder import runtime

    onnx = runtime.select_runtime(args.encoder, args.runtime, args.device, batch_size=args.batch_size)
    if onnx is not None:
        stats = runtime.embed_file(
            args.encoder,
            args.events,
            args.out,
            batch_size=args.batch_size,
            max_rows_in_memory=args.max_rows_in_memory,
            channel=args.channel,
            progress=not args.quiet,
            embedder=onnx,
            start=start,
        )
        print(embed_summary(stats, args.out) + " (onnx runtime)")
        return 0
    from clicks2intent.encoder.embed import embed_file

    stats = embed_file(
        args.encoder,
        args.events,
        args.out,
        batch_size=args.batch_size,
        max_rows_in_memory=args.max_rows_in_memory,
        channel=args.channel,
        device=args.device,
        progress=not args.quiet,
    )
    print(embed_summary(stats, args.out) + " (torch runtime)")
    return 0


def _register_embed(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("embed", help="embed every session of an events parquet with a trained encoder")
    p.add_argument("--encoder", required=True, help="encoder directory (checkpoint.pt [+ encoder.ts])")
    p.add_argument("--events", required=True, help="events parquet in the clickstream contract")
    p.add_argument("--out", required=True, help="output parquet: session_id, event_timestamp, embedding")
    p.add_argument("--batch-size", type=int, default=1024, help="sessions per model batch (length-bucketed)")
    p.add_argument(
        "--max-rows-in-memory",
        type=int,
        default=5_000_000,
        help="bigger inputs are spilled to session-hash partitions on disk and embedded one at a time",
    )
    p.add_argument("--channel", choices=list(C.CHANNELS), help="embed only events of this channel (e.g. web)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="auto",
        help="auto: ONNX Runtime on CPU when the encoder dir has a current encoder.onnx (no torch in the "
        "process), else torch; onnx: that or an error; torch: the eager PyTorch model (CUDA always uses it)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_engine_arguments(p)
    p.set_defaults(func=_embed_command)


def _add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``cli.features.add_engine_arguments`` without its import of features.ray_jobs (pandas).

    The Ray flags default to None here; ``_embed_command`` fills in ``RayOptions``' defaults.
    """
    g = parser.add_argument_group("engine (--engine ray: Ray Data actor pool; needs the ray extra)")
    g.add_argument("--engine", choices=ENGINES, default="local", help="local: one process (default)")
    g.add_argument("--ray", dest="engine", action="store_const", const="ray", help="same as --engine ray")
    g.add_argument("--ray-address", help="Ray cluster (auto, ray://head:10001); default: local Ray")
    g.add_argument("--ray-cpus", type=int, help="CPUs of the local Ray (default: RayOptions.num_cpus)")
    g.add_argument("--ray-actors", type=int, help="actor pool size (default: RayOptions.actors)")
