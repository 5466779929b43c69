"""The world declaration: parsing with one-line errors naming the key, raw page mapping, and the checks
that turn a declaration the data do not fit into a clear error instead of silent empty features."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from clicks2intent.data.contract import check_oov_share, validate_events
from clicks2intent.data.simulator import simulator_world
from clicks2intent.data.world import (
    PageMapper,
    check_labels,
    check_page_types,
    load_world,
    normalise_page,
    parse_world,
    resolve_world_path,
    write_world,
)
from clicks2intent.errors import ArtifactError, ConfigError, ContractError
from clicks2intent.names import columns as C

HARBOR = Path(__file__).resolve().parents[1] / "fixtures" / "harbor_bank" / "world.yaml"


@pytest.fixture
def harbor() -> dict:
    return yaml.safe_load(HARBOR.read_text())


def test_a_declaration_round_trips_through_yaml(tmp_path: Path) -> None:
    for world in (simulator_world(), load_world(HARBOR)):
        path = write_world(world, tmp_path / f"{world.name}.yaml")
        again = load_world(path)
        assert again.to_dict() == world.to_dict()
        assert again.digest == world.digest
        assert path.read_text().startswith("# clicks2intent world declaration")


def test_the_hand_written_bank_is_not_the_simulated_one() -> None:
    harbor, sim = load_world(HARBOR), simulator_world()
    assert len(harbor.tiles) == 14 and len(harbor.products) == 6
    assert not set(harbor.tiles) & set(sim.tiles)
    assert not set(harbor.profile) & set(sim.profile)
    assert harbor.feast_name("tile_ranker_v1") == "harbor_tile_ranker_v1"
    assert harbor.classes("conversion") == (*harbor.products, C.NO_CONVERSION)
    assert harbor.page_count_fields[0] == f"session_pages_{harbor.page_types[0]}"
    assert harbor.session_activity_fields[-len(harbor.page_types) :] == harbor.page_count_fields


@pytest.mark.parametrize(
    ("raw", "page"),
    [
        ("/", "home"),
        (
            "https://www.harborfed.example/mortgages/green-mortgage?email=a@b.example&utm=x",
            "green_mortgage_page",
        ),
        ("/mortgages/green-mortgage/rates/", "green_mortgage_page"),
        ("/Cards/Travel-Rewards", "travel_card_page"),  # case-insensitive
        ("/mortgages", "mortgages_hub"),  # the section, after its specific pages (first match wins)
        ("/mortgages/other-thing", "mortgages_hub"),
        ("/apply/start?product=travel_card", "apply_begin"),
        ("/savings/kids%20saver", "kids_saver_page"),  # percent-decoded
        ("app_dashboard", "app_dashboard"),  # an already-mapped type is itself
        ("green_mortgage_page", "green_mortgage_page"),
        ("/no/such/page", C.OOV_PAGE_TYPE),
        ("", C.OOV_PAGE_TYPE),
        (None, C.OOV_PAGE_TYPE),
    ],
)
def test_raw_pages_map_to_declared_types(raw: object, page: str) -> None:
    assert load_world(HARBOR).mapper(raw) == page


def test_regex_patterns_and_the_mapping_report(harbor: dict) -> None:
    harbor["pages"] = {"loans": ["re:/loans/(car|van)-finance.*"], **harbor["pages"]}
    world = parse_world(harbor)
    mapper = PageMapper(world)
    assert mapper("/loans/van-finance/apply") == "loans"
    mapped, report = mapper.map_values(["/", "/", "/zzz?card=4111111111111111", None, "/loans/car-finance"])
    assert mapped == ["home", "home", C.OOV_PAGE_TYPE, C.OOV_PAGE_TYPE, "loans"]
    assert (report.n_events, report.n_oov) == (5, 2)
    assert report.oov_share == pytest.approx(0.4)
    assert ["/zzz", 1] in [list(t) for t in report.top_unmatched]  # the path only: no query (and no PII)
    assert "home" not in report.unused_types and "sign_in" in report.unused_types


def test_normalise_keeps_the_path_of_urls_only() -> None:
    assert normalise_page("HTTPS://x.example/A/b/?q=1#f") == "/a/b"
    assert normalise_page("  Product_Page ") == "product_page"
    assert normalise_page("/") == "/"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(tile=d.pop("tiles")), r"unknown key \(known:"),
        (lambda d: d.update(version=2), "version: must be 1"),
        (lambda d: d["tiles"].update({"Bad-Tile": []}), r"tiles.Bad-Tile: tile id 'Bad-Tile' must match"),
        (lambda d: d["tiles"].update({"none": []}), "is reserved"),
        (
            lambda d: d["tiles"].update(x_tile=["nowhere_page"]),
            "tiles.x_tile: page type 'nowhere_page' is not declared",
        ),
        (
            lambda d: d.update(products=["travel_card", "travel_card"]),
            "products: 'travel_card' is declared twice",
        ),
        (lambda d: d.update(products=[]), "products: must list at least one"),
        (lambda d: d["profile"].update(segment="text"), "profile.segment: kind 'text' must be one of"),
        (lambda d: d["profile"].update(customer_intent_label="string"), "is a clicks2intent feature name"),
        (lambda d: d["profile"].update(customer_id="string"), "key/time column"),
        (lambda d: d["funnel"].pop("application_start"), "funnel.application_start: is required"),
        (lambda d: d["funnel"].update(application_form="nope"), "funnel.application_form: page type 'nope'"),
        (lambda d: d["pages"].update(bad=["re:("]), "pages.bad: pattern 're:\\(' is not a valid regular"),
        (lambda d: d.update(app_pages=["home"]), "app_pages.home: is also declared under pages"),
        (lambda d: d.update(max_oov_share=1.5), "max_oov_share: must be a share"),
        (lambda d: d.update(conversion_horizon_days=0), "conversion_horizon_days: must be a number"),
        (lambda d: d["feast"].update(prefix="Harbor-"), "feast.prefix: 'Harbor-' must match"),
        (lambda d: d.update(profile={}), "profile: must map at least one"),
    ],
)
def test_every_error_is_one_line_naming_the_key(harbor: dict, edit, message: str) -> None:
    data = copy.deepcopy(harbor)
    edit(data)
    with pytest.raises(ConfigError, match=message) as err:
        parse_world(data, "harbor.yaml")
    assert "\n" not in str(err.value) and str(err.value).startswith("harbor.yaml: ")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="c2i world propose"):
        load_world(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiles: [a, b\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_world(bad)


def test_the_world_path_a_command_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("C2I_WORLD", raising=False)
    assert resolve_world_path(None, tmp_path) == tmp_path / "world.yaml"
    assert resolve_world_path("given.yaml", tmp_path) == Path("given.yaml")
    monkeypatch.setenv("C2I_WORLD", str(HARBOR))
    assert resolve_world_path(None, tmp_path) == HARBOR
    monkeypatch.delenv("C2I_WORLD")
    with pytest.raises(ConfigError, match="--world"):
        resolve_world_path(None, None)


def _events(pages: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            C.SESSION_ID: ["s1"] * len(pages),
            C.EVENT_TIMESTAMP: pd.date_range("2024-05-01", periods=len(pages), freq="min", tz="UTC"),
            C.PAGE_TYPE: pages,
        }
    )


def test_validation_maps_pages_and_refuses_a_declaration_that_does_not_fit() -> None:
    world = load_world(HARBOR)
    ok = validate_events(_events(["/", "/cards/travel?x=1", "/unknown"]), world=world)
    assert list(ok.events[C.PAGE_TYPE]) == ["home", "travel_card_page", C.OOV_PAGE_TYPE]
    assert ok.report.page_mapping["n_oov"] == 1
    assert "1 of 3 events unmatched" in ok.report.to_text()
    check_oov_share(ok.report, world, "events.csv")  # 33 % <= 50 %: fine
    # The simulated bank's page names through Harbor's declaration: all but its home page unmatched.
    sim = simulator_world()
    wrong = validate_events(_events(list(sim.page_types[:6])), world=world)
    with pytest.raises(
        ContractError, match=r"events.csv: page_type: 83.3% of events match no page type"
    ) as err:
        check_oov_share(wrong.report, world, "events.csv")
    assert "max_oov_share" in str(err.value) and "\n" not in str(err.value)


def test_mapped_data_and_task_logs_must_use_declared_names() -> None:
    world = load_world(HARBOR)
    check_page_types(["home", C.OOV_PAGE_TYPE, "app_dashboard"], world, "events")
    with pytest.raises(ContractError, match=r"events: page_type '/cards/travel' .*`c2i validate"):
        check_page_types(["home", "/cards/travel"], world, "events")
    check_labels(["travel_card", "none"], (*world.tiles, C.NO_CLICK), "impressions", C.CLICKED_TILE, world)
    with pytest.raises(
        ContractError, match="clicked_tile_id value 'mortgage' .* not declared in world 'harbor-federal'"
    ):
        check_labels(["mortgage"], (*world.tiles, C.NO_CLICK), "impressions", C.CLICKED_TILE, world)
    with pytest.raises(ContractError, match="null values"):
        check_labels([None], (*world.tiles, C.NO_CLICK), "impressions", C.CLICKED_TILE, world)


def test_the_rule_keywords_default_to_tile_and_page_words(harbor: dict) -> None:
    harbor.pop("keywords")
    world = parse_world(harbor)
    assert world.rule_keywords()["travel_card"] == ("travel_card", "travel_card_page")
    assert simulator_world().rule_keywords()["mortgage"][0] == "mortgage"


def test_the_documented_example_is_a_valid_declaration() -> None:
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "world.md").read_text()
    (block,) = re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)
    world = parse_world(yaml.safe_load(block), "docs/world.md")
    assert world.mapper("/report-fraud/now") == "fraud_page" and world.feast_prefix == "harbor_"
