"""``c2i features build`` (the offline Feast sources) and ``c2i features online`` (one customer's features).

The work lives in :mod:`clicks2intent.features.build` (:func:`~clicks2intent.features.build.build_feature_sources`)
and :mod:`clicks2intent.features.store` (:func:`~clicks2intent.features.store.customer_features`); these
handlers parse, make that one call and print.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clicks2intent.cli.flags import given
from clicks2intent.errors import ConfigError
from clicks2intent.names.features import TILE_RANKER_V1
from clicks2intent.names.paths import ARTIFACTS, FEATURE_FILES

if TYPE_CHECKING:  # pandas, pyarrow and Feast are imported by the handlers
    from clicks2intent.features.build import BuildReport, FeatureBuildConfig, FeatureBuildPaths
    from clicks2intent.features.ray_jobs import RayOptions

ENGINES = ("local", "ray")  # clicks2intent.features.ray_jobs.ENGINES (tests/test_cli_help.py checks it)
RUNTIMES = ("auto", "onnx", "torch")  # clicks2intent.encoder.runtime.RUNTIMES


# --- --engine ray (c2i embed, c2i taxonomy label) ------------------------------------------------------
def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine local|ray`` and where Ray runs (clicks2intent.features.ray_jobs); the Ray flags default to
    None, :func:`ray_options` fills in ``RayOptions``' defaults."""
    g = parser.add_argument_group("engine (--engine ray: Ray Data actor pool; needs the ray extra)")
    g.add_argument("--engine", choices=ENGINES, default="local", help="local: one process (default)")
    g.add_argument(
        "--ray",
        dest="engine",
        action="store_const",
        const="ray",
        help="same as --engine ray",
    )
    g.add_argument("--ray-address", help="Ray cluster (auto, ray://head:10001); default: local Ray")
    g.add_argument("--ray-cpus", type=int, help="CPUs of the local Ray (default: RayOptions.num_cpus)")
    g.add_argument("--ray-actors", type=int, help="actor pool size (default: RayOptions.actors)")


def ray_options(args: argparse.Namespace) -> RayOptions:
    """The parsed engine flags as :class:`~clicks2intent.features.ray_jobs.RayOptions`."""
    from clicks2intent.features.ray_jobs import RayOptions

    return RayOptions(**given(address=args.ray_address, num_cpus=args.ray_cpus, actors=args.ray_actors))


def build_options(args: argparse.Namespace) -> tuple[FeatureBuildPaths, FeatureBuildConfig]:
    """The parsed ``features build`` flags as the job's typed inputs."""
    from clicks2intent.features.build import FeatureBuildConfig, FeatureBuildPaths

    paths = FeatureBuildPaths(
        data_dir=Path(args.data),
        world=Path(args.world) if args.world else None,
        embeddings=Path(args.embeddings),
        intents=Path(args.intents),
        intent_model=Path(args.intent_model),
        out_dir=Path(args.out),
    )
    config = FeatureBuildConfig(
        n_buckets=args.buckets, **given(half_life_days=args.half_life_days, window_days=args.window_days)
    )
    return paths, config


def build_command(args: argparse.Namespace) -> int:
    from clicks2intent.features.build import build_feature_sources

    report = build_feature_sources(*build_options(args))
    print("\n".join(report_lines(report, args.out)))
    return 0


def report_lines(report: BuildReport, out: str | Path) -> list[str]:
    """What ``c2i features build`` prints: the counts, then each file's rows."""
    lines = [
        f"features: {report.n_events} events, {report.n_sessions} sessions ({report.n_sessions_with_intent} with "
        f"embedding+intent), {report.n_links} identity links, {report.n_customers} customers → {out} "
        f"in {report.seconds:.1f}s ({report.n_buckets} bucket(s))"
    ]
    for name, rows in report.rows.items():
        anchors = report.anchors.get(name)
        lines.append(f"  {FEATURE_FILES[name]}: {rows} rows" + (f" + {anchors} anchors" if anchors else ""))
    if report.n_embeddings_without_intent or report.n_intents_without_embedding:
        lines.append(
            f"  note: {report.n_embeddings_without_intent} embedded session(s) without an intent and "
            f"{report.n_intents_without_embedding} intent(s) without an embedding were left out"
        )
    return lines


def online_command(args: argparse.Namespace) -> int:
    from clicks2intent.features.store import customer_features, skip_feast_typechecks

    skip_feast_typechecks()  # a read of a store `feast apply` validated: as the service does (store.py)
    result = customer_features(
        repo_path=args.repo,
        customer_id=args.customer_id,
        service=args.service,
        config=args.config,
        features_dir=args.features,
    )
    print(
        f"online features of customer {result.customer_id} (service {result.service}, project {result.project}):"
    )
    width = max(len(k) for k in result.values)
    for name, value in result.values.items():
        print(f"  {name:<{width}}  {_short(value)}")
    ranked = result.tiles_by_affinity()
    if ranked:
        print("  tiles by web-intent affinity: " + ", ".join(f"{t} {a:+.2f}" for t, a in ranked[:5]))
    return 0


def push_command(args: argparse.Namespace) -> int:
    import time

    from clicks2intent.data.contract import read_events
    from clicks2intent.features.push import push_sessions
    from clicks2intent.features.store import open_store
    from clicks2intent.features.transforms import load_artifact_world, load_models

    t0 = time.perf_counter()
    events = read_events(args.events)
    embedder, classifier = load_models(Path(args.artifacts))
    world = load_artifact_world(Path(args.artifacts).resolve())  # the one the features were built with
    store = open_store(args.repo, args.config)
    report = push_sessions(
        store,
        events,
        embedder,
        classifier,
        classifier.taxonomy_version,
        features_dir=None if args.no_visitors else args.features,
        world=world,
    )
    steps = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in report.seconds.items())
    print(
        f"pushed {len(report.session_ids)} session(s) and {len(report.visitor_ids)} visitor(s) online "
        f"({steps}; loading {time.perf_counter() - t0 - sum(report.seconds.values()):.1f} s)"
    )
    return 0


def daily_command(args: argparse.Namespace) -> int:
    from datetime import datetime

    from clicks2intent.features.daily import DailyConfig, run_daily

    config = DailyConfig(
        day_dir=Path(args.day),
        artifacts=Path(args.artifacts),
        features_dir=Path(args.features) if args.features else None,
        repo=None if args.no_materialize else Path(args.repo),
        feast_config=args.config,
        end=datetime.fromisoformat(args.end) if args.end else None,
        runtime=args.runtime,
    )
    report = run_daily(config)
    print("\n".join(report.lines()))
    return 0


def materialize_command(args: argparse.Namespace) -> int:
    import time
    from datetime import datetime

    from clicks2intent.features.daily import materialize

    t0 = time.perf_counter()
    if args.incremental:
        start, end = None, datetime.fromisoformat(args.times[0])
        if len(args.times) != 1:
            raise ConfigError("--incremental takes END only")
    else:
        if len(args.times) != 2:
            raise ConfigError("materialize takes START END (or --incremental END)")
        start, end = (datetime.fromisoformat(t) for t in args.times)
    views = materialize(Path(args.repo), start, end, args.config, args.views)
    what = f"to {end.isoformat()}" if start is None else f"{start.isoformat()} .. {end.isoformat()}"
    print(f"materialized {len(views)} view(s) {what} in {time.perf_counter() - t0:.1f} s: {', '.join(views)}")
    return 0


def _short(value: Any, width: int = 6) -> str:
    if isinstance(value, list | tuple):
        head = ", ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in value[:width])
        return f"[{head}{', …' if len(value) > width else ''}] (len {len(value)})"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def register(subparsers: argparse._SubParsersAction) -> None:
    """``c2i features build`` (offline sources) and ``c2i features online`` (one customer's features)."""
    parser = subparsers.add_parser("features", help="build the Feast feature sources; read online features")
    sub = parser.add_subparsers(dest="features_command", required=True)
    b = sub.add_parser("build", help="events + embeddings + intents + identity links → Feast parquet sources")
    b.add_argument(
        "--data", default=str(ARTIFACTS.data), help="dir with events, identity_links, customers parquet"
    )
    b.add_argument(
        "--world", default=None, help="the bank's world.yaml (default: $C2I_WORLD, else DATA/world.yaml)"
    )
    b.add_argument("--embeddings", default=str(ARTIFACTS.embeddings))
    b.add_argument("--intents", default=str(ARTIFACTS.session_intents))
    b.add_argument(
        "--intent-model", default=str(ARTIFACTS.intent), help="distilled classifier dir (label order)"
    )
    b.add_argument("--out", default=str(ARTIFACTS.features))
    b.add_argument(
        "--half-life-days",
        type=float,
        default=None,
        help="decay half-life (default: FeatureBuildConfig.half_life_days)",
    )
    b.add_argument(
        "--window-days",
        type=float,
        default=None,
        help="activity-count window (default: FeatureBuildConfig.window_days)",
    )
    b.add_argument(
        "--buckets", type=int, default=None, help="hash partitions (default: events / bucket_rows)"
    )
    b.set_defaults(func=build_command)
    o = sub.add_parser(
        "online", help="print one customer's online features (after feast apply + materialize)"
    )
    o.add_argument("--repo", default="feature_repo", help="Feast repository")
    o.add_argument(
        "--config", default=None, help="feature store YAML (default: the repo's feature_store.yaml)"
    )
    o.add_argument("--customer-id", default=None, help="default: a customer with linked web intent")
    o.add_argument(
        "--service",
        default=None,
        help=f"feature service to read (default: {TILE_RANKER_V1}, with the world's prefix)",
    )
    o.add_argument(
        "--features", default=str(ARTIFACTS.features), help="feature sources (to pick a default customer)"
    )
    o.set_defaults(func=online_command)
    p = sub.add_parser(
        "push",
        help="finished sessions' events → embed + label → push session and visitor web intent online",
    )
    p.add_argument(
        "--events", required=True, help="events (parquet/CSV, clickstream contract) of ended sessions"
    )
    p.add_argument("--artifacts", default=str(ARTIFACTS.root), help="artifacts dir (encoder/, intent/)")
    p.add_argument("--repo", default="feature_repo", help="Feast repository")
    p.add_argument(
        "--config", default=None, help="feature store YAML (default: the repo's feature_store.yaml)"
    )
    p.add_argument(
        "--features",
        default=str(ARTIFACTS.features),
        help="feature sources (visitor history + build_report.json for the visitor aggregate)",
    )
    p.add_argument("--no-visitors", action="store_true", help="push the session rows only")
    p.set_defaults(func=push_command)
    d = sub.add_parser(
        "daily",
        help="a new day: embed + label its sessions with the trained models, append the Feast sources, "
        "materialize-incremental (idempotent)",
    )
    d.add_argument(
        "--day",
        required=True,
        help="the day's dir: events.parquet (sessions ended that day) [+ identity_links]",
    )
    d.add_argument("--artifacts", default=str(ARTIFACTS.root), help="encoder/, intent/, data/ (link history)")
    d.add_argument("--features", default=None, help="the Feast sources (default: ARTIFACTS/features)")
    d.add_argument("--repo", default="feature_repo", help="Feast repository (materialize-incremental there)")
    d.add_argument(
        "--config", default=None, help="feature store YAML in the repo (default: feature_store.yaml)"
    )
    d.add_argument(
        "--end",
        default=None,
        help="materialize-incremental END, ISO 8601 UTC (default: the midnight after the day)",
    )
    d.add_argument("--no-materialize", action="store_true", help="append the sources only")
    d.add_argument(
        "--runtime", choices=RUNTIMES, default="auto", help="embedding runtime, as c2i embed --runtime"
    )
    d.set_defaults(func=daily_command)
    m = sub.add_parser(
        "materialize",
        help="feast materialize START END / materialize-incremental END, in one process without the feast "
        "CLI's start-up",
    )
    m.add_argument("times", nargs="+", help="START END (ISO 8601, UTC), or END with --incremental")
    m.add_argument("--incremental", action="store_true", help="from each view's last materialisation")
    m.add_argument(
        "--views", "-v", nargs="+", default=None, help="these feature views only (default: all online)"
    )
    m.add_argument("--repo", default="feature_repo", help="Feast repository")
    m.add_argument(
        "--config", default=None, help="feature store YAML in the repo (default: feature_store.yaml)"
    )
    m.set_defaults(func=materialize_command)
