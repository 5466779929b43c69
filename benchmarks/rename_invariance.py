"""Rename invariance: the demo's world under another bank's names must give the same ablation table.

Takes a data directory written by ``c2i simulate`` (with its ``world.yaml``) and writes the same rows as
another bank would hand them over: every web page becomes a URL of another site (with a host and a
tracking query), page types, tiles and products get other names, the profile columns are renamed, one
is dropped and one (noise) is added; a new ``world.yaml`` declares all of it. Then it runs the pipeline
(validate → encoder → embed → taxonomy → labels → distil → features → Feast → evaluate) on BOTH
directories with the same seeds and prints the two ablation tables side by side: the reference is the
original run, in the same process and on the same machine.

    .venv/bin/python benchmarks/rename_invariance.py --data artifacts/data --work /tmp/rename
    .venv/bin/python benchmarks/rename_invariance.py --data artifacts/data --work /tmp/rename --rename-only

Nothing here names the simulated world outside the rename table below, which is this experiment's data.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from clicks2intent.data.world import Funnel, World, load_world, write_world
from clicks2intent.names import columns as C

log = logging.getLogger("rename_invariance")
ROOT = Path(__file__).resolve().parents[1]
HOST = "https://www.northwind-credit.example"

# Old name -> (new page type, URL path) for web pages, new name for app screens, tiles/products, profile.
WEB = {
    "home": ("welcome", "/"),
    "search": ("find", "/search"),
    "login": ("sign_on", "/account/login"),
    "faq": ("help_questions", "/help/faq"),
    "contact": ("get_in_touch", "/contact-us"),
    "branch_locator": ("find_branch", "/branches"),
    "blog": ("articles", "/insights/articles"),
    "about": ("who_we_are", "/about-us"),
    "rates": ("our_rates", "/rates"),
    "apply_start": ("application_begin", "/apply/begin"),
    "apply_form": ("application_details", "/apply/details"),
    "product_mortgage": ("home_loans_page", "/borrow/home-loans"),
    "product_credit_card": ("cards_page", "/cards"),
    "product_auto_loan": ("vehicle_finance_page", "/borrow/vehicle-finance"),
    "product_personal_loan": ("personal_lending_page", "/borrow/personal"),
    "product_savings": ("saver_accounts_page", "/save/accounts"),
    "product_investing": ("invest_page", "/invest"),
    "product_retirement": ("pension_page", "/retire/pensions"),
    "product_business_banking": ("business_page", "/business"),
    "mortgage_calculator": ("home_loan_calc", "/tools/home-loan-calculator"),
    "auto_loan_calculator": ("vehicle_calc", "/tools/vehicle-calculator"),
    "loan_calculator": ("lending_calc", "/tools/loan-calculator"),
    "savings_calculator": ("saver_calc", "/tools/saving-calculator"),
    "compare_cards": ("card_comparison", "/cards/compare"),
    "market_insights": ("markets_news", "/invest/markets"),
    "retirement_planner": ("pension_planner", "/retire/planner"),
    "business_solutions": ("business_services", "/business/services"),
    "security_center": ("safety_hub", "/security"),
    "report_fraud": ("fraud_report", "/security/report"),
    "account_help": ("account_support", "/help/account"),
}
APP = {
    "app_home": "app_start",
    "account_balance": "balances",
    "transactions": "activity",
    "transfers": "move_money",
    "bill_pay": "pay_bills",
    "statements": "documents",
    "card_controls": "card_settings",
    "messages": "inbox",
    "settings": "preferences",
    "deposit_check": "mobile_deposit",
}
NAMES = {
    "mortgage": "home_loan",
    "credit_card": "card",
    "auto_loan": "vehicle_finance",
    "personal_loan": "personal_lending",
    "savings": "saver",
    "investing": "invest",
    "retirement": "pension",
    "business_banking": "business",
    "security_center": "safety",
    "account_services": "support",
}
PROFILE = {"tenure_months": "months_with_bank", "age": "customer_age_years",
           "app_sessions_30d": "app_logins_month", "balance_band": "balance_tier",
           "n_products": "product_count"}  # fmt: skip
DROPPED, ADDED = "has_business_banking", "marketing_opt_in"


def renamed_world(world: World) -> World:
    def page(p: str) -> str:
        return WEB[p][0]

    profile = {}
    for col, kind in world.profile.items():
        if col == DROPPED:
            continue
        new = PROFILE.get(col) or (
            "holds_" + NAMES[col.removeprefix("has_")] if col.startswith("has_") else col
        )
        profile[new] = kind
    profile[ADDED] = "bool"
    return World(
        name="northwind-credit",
        tiles=tuple(NAMES[t] for t in world.tiles),
        tile_pages={NAMES[t]: tuple(page(p) for p in ps) for t, ps in world.tile_pages.items()},
        products=tuple(NAMES[p] for p in world.products),
        page_types=tuple(page(p) for p in world.page_types),
        page_patterns={page(p): (WEB[p][1],) for p in world.page_types},
        app_page_types=tuple(APP[p] for p in world.app_page_types),
        app_page_patterns={},
        funnel=Funnel(
            product=tuple(page(p) for p in world.funnel.product),
            application_start=page(world.funnel.application_start),
            application_form=page(world.funnel.application_form),
            apply=tuple(page(p) for p in world.funnel.apply),
            search=tuple(page(p) for p in world.funnel.search),
        ),
        profile=profile,
        conversion_horizon_days=world.conversion_horizon_days,
        feast_prefix="nw_",
        keywords=dict(world.keywords),
    )


def rename_data(src: Path, dst: Path, seed: int = 0) -> World:
    """Write ``src`` (a simulator data dir) under the other bank's names into ``dst``; returns its world."""
    rng = np.random.default_rng(seed)
    world = load_world(src / "world.yaml")
    new = renamed_world(world)
    dst.mkdir(parents=True, exist_ok=True)
    ev = pd.read_parquet(src / "events.parquet")
    web = ev[C.CHANNEL] == "web"
    urls = {p: f"{HOST}{path}" for p, (_, path) in WEB.items()}
    raw = ev[C.PAGE_TYPE].map(lambda p: urls.get(p) or APP.get(p) or p)
    tracking = np.where(rng.random(len(ev)) < 0.3, "?utm_source=mail&utm_campaign=spring", "")
    ev[C.PAGE_TYPE] = np.where(web, raw + tracking, raw)
    ev.to_parquet(dst / "raw_events.parquet", index=False)
    cust = pd.read_parquet(src / "customers.parquet").drop(columns=[DROPPED])
    cust = cust.rename(
        columns=PROFILE | {c: "holds_" + NAMES[c.removeprefix("has_")] for c in cust if c.startswith("has_")}
    )
    cust[ADDED] = rng.random(len(cust)) < 0.4
    cust.to_parquet(dst / "customers.parquet", index=False)
    imp = pd.read_parquet(src / "tile_impressions.parquet")
    imp[C.CLICKED_TILE] = imp[C.CLICKED_TILE].map(lambda t: NAMES.get(t, t))
    imp.to_parquet(dst / "tile_impressions.parquet", index=False)
    conv = pd.read_parquet(src / "conversions.parquet")
    conv[C.CONVERSION_PRODUCT] = conv[C.CONVERSION_PRODUCT].map(lambda t: NAMES.get(t, t))
    conv.to_parquet(dst / "conversions.parquet", index=False)
    shutil.copy2(src / "identity_links.parquet", dst / "identity_links.parquet")
    shutil.copytree(src / "truth", dst / "truth", dirs_exist_ok=True)  # evaluation only: the oracle rows
    write_world(new, dst / "world.yaml")
    return new


def run(cmd: list[str], env: dict[str, str], cwd: Path, timings: dict[str, float], step: str) -> None:
    t0 = time.perf_counter()
    log.info("%s: %s", step, " ".join(cmd))
    subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    timings[step] = timings.get(step, 0.0) + time.perf_counter() - t0


def pipeline(work: Path, data: Path, label_sample: int) -> dict:
    """The demo's steps 2-7 (no MSNBC, no service) on ``data`` with artifacts under ``work``."""
    import os

    bindir = Path(sys.executable).parent
    c2i, feast = str(bindir / "c2i"), str(bindir / "feast")
    art = work / "artifacts"
    if art.exists():
        shutil.rmtree(art)
    repo = work / "feature_repo"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    d = art / "data"
    shutil.copytree(data, d)
    env = dict(
        os.environ, C2I_ARTIFACTS=str(art), BENTOML_HOME=str(art / "bentoml"), OMP_WAIT_POLICY="PASSIVE"
    )
    env.pop("C2I_WORLD", None)
    t: dict[str, float] = {}
    if (d / "raw_events.parquet").exists():
        run([c2i, "validate", str(d / "raw_events.parquet"), "--world", str(d / "world.yaml"),
             "--out", str(d / "events.parquet")], env, work, t, "validate")  # fmt: skip
    ev, emb = str(d / "events.parquet"), str(art / "embeddings" / "session_embeddings.parquet")
    run([c2i, "train-encoder", "--events", ev, "--channel", "web", "--out", str(art / "encoder"), "--quiet"],
        env, work, t, "train-encoder")  # fmt: skip
    run([c2i, "embed", "--encoder", str(art / "encoder"), "--events", ev, "--channel", "web", "--out", emb],
        env, work, t, "embed")  # fmt: skip
    tax, labels = str(art / "taxonomy" / "taxonomy.yaml"), str(art / "taxonomy" / "llm_labels.parquet")
    run([c2i, "taxonomy", "generate", "--events", ev, "--out", tax], env, work, t, "taxonomy")
    run([c2i, "taxonomy", "label", "--events", ev, "--taxonomy", tax, "--sample", str(label_sample),
         "--out", labels], env, work, t, "label")  # fmt: skip
    run([c2i, "taxonomy", "distill", "--labels", labels, "--out", str(art / "intent"), "--embeddings", emb,
         "--truth", str(d / "truth" / "session_truth.parquet"), "--events", ev], env, work, t, "distill")  # fmt: skip
    run([c2i, "features", "build", "--data", str(d), "--embeddings", emb,
         "--intents", str(art / "intent" / "session_intents.parquet"), "--intent-model", str(art / "intent"),
         "--out", str(art / "features")], env, work, t, "features")  # fmt: skip
    run([feast, "apply"], env, repo, t, "feast")
    run([feast, "materialize", "2000-01-01T00:00:00", "2030-01-01T00:00:00"], env, repo, t, "feast")
    run([c2i, "evaluate", "--repo", str(repo), "--data", str(d), "--features", str(art / "features"),
         "--reports", str(art / "reports"), "--encoder", str(art / "encoder"), "--intent", str(art / "intent"),
         "--taxonomy", tax, "--bentoml-home", str(art / "bentoml")], env, work, t, "evaluate")  # fmt: skip
    report = json.loads((art / "reports" / "ablation.json").read_text())
    report["_seconds"] = t
    report["_distillation"] = json.loads((art / "intent" / "report.json").read_text()).get("truth", {})
    return report


def table(original: dict, renamed: dict) -> str:
    """Per task: each variant's value and its difference to its own run's baseline (95 % paired-bootstrap
    interval), original beside renamed, and whether the two intervals overlap."""
    lines = []
    for task, metrics in (("tile_ranking", ("macro_recall_at_1", "log_loss")),
                          ("conversion", ("micro_f1", "log_loss"))):  # fmt: skip
        lines.append(
            f"\n### {task} (n_test original {original[task]['n_test']}, renamed {renamed[task]['n_test']})"
        )
        lines.append(
            "| variant | metric | original | Δ vs baseline [95 %] | renamed | Δ vs baseline [95 %] | overlap |"
        )
        lines.append("|---|---|---:|---:|---:|---:|:---:|")
        for variant, e in original[task]["variants"].items():
            r = renamed[task]["variants"].get(variant, {})
            for m in metrics:
                a, b = (e.get("vs_baseline") or {}).get(m), (r.get("vs_baseline") or {}).get(m)

                def fmt(d: dict | None) -> str:
                    return "" if not d else f"{d['diff']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"

                overlap = (
                    ""
                    if not (a and b)
                    else ("yes" if a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"] else "NO")
                )
                lines.append(
                    f"| {variant} | {m} | {e.get(m, float('nan')):.4f} | {fmt(a)} | {r.get(m, float('nan')):.4f} | {fmt(b)} | {overlap} |"
                )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="artifacts/data", help="a c2i simulate output directory")
    p.add_argument("--work", default="/tmp/rename_invariance")
    p.add_argument("--label-sample", type=int, default=3000)
    p.add_argument("--rename-only", action="store_true", help="write the renamed data and stop")
    p.add_argument("--tables-only", action="store_true", help="print the tables of the last run in --work")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = Path(args.work)
    if args.tables_only:
        saved = json.loads((work / "rename_invariance.json").read_text())
        print(table(saved["original"], saved["renamed"]))
        return 0
    renamed_dir = work / "renamed_data"
    world = rename_data(Path(args.data), renamed_dir)
    log.info("renamed data (world %s, %d tiles, %d products) in %s", world.name, len(world.tiles),
             len(world.products), renamed_dir)  # fmt: skip
    if args.rename_only:
        return 0
    original = pipeline(work / "original", Path(args.data), args.label_sample)
    renamed = pipeline(work / "renamed", renamed_dir, args.label_sample)
    print(table(original, renamed))
    for name, rep in (("original", original), ("renamed", renamed)):
        print(
            f"\n{name}: seconds per step {json.dumps({k: round(v, 1) for k, v in rep['_seconds'].items()})}"
        )
        print(f"{name}: labels vs truth {json.dumps(rep['_distillation'])[:600]}")
    (work / "rename_invariance.json").write_text(
        json.dumps({"original": original, "renamed": renamed}, default=str)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
