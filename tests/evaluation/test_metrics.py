"""Metric functions against values computed by hand, and the paired bootstrap's behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clicks2intent.evaluation import metrics as M

# Four rows, three classes. Top-1 predictions: 0, 1, 2, 0 (the last row's true class is 1).
Y = np.array([0, 1, 1, 2])
P = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.1, 0.6, 0.3],
        [0.2, 0.3, 0.5],
        [0.5, 0.1, 0.4],
    ]
)


def test_macro_recall_at_1_by_hand() -> None:
    # class 0: 1/1 hit; class 1: rows 1 (hit) and 2 (miss) -> 1/2; class 2: row 3 (top-1 is 0) -> 0
    assert M.macro_recall_at_1(Y, P) == pytest.approx((1.0 + 0.5 + 0.0) / 3)


def test_macro_recall_ignores_absent_classes() -> None:
    # class 2 never occurs in y: the mean runs over classes 0 and 1 only
    y = np.array([0, 1])
    p = np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1]])
    assert M.macro_recall_at_1(y, p) == pytest.approx(0.5)


def test_log_loss_by_hand() -> None:
    expected = -(math.log(0.7) + math.log(0.6) + math.log(0.3) + math.log(0.4)) / 4
    assert M.log_loss(Y, P) == pytest.approx(expected)


def test_log_loss_clips_zero_probability() -> None:
    y = np.array([1])
    p = np.array([[1.0, 0.0]])
    assert M.log_loss(y, p, eps=1e-6) == pytest.approx(-math.log(1e-6))


def test_ranks_and_ndcg_at_3_by_hand() -> None:
    # ranks of the true class: row0 1, row1 1, row2 2 (0.3 < 0.5), row3 2 (0.4 < 0.5)
    assert M.ranks_of_true(Y, P).tolist() == [1, 1, 2, 2]
    expected = (1 + 1 + 1 / math.log2(3) + 1 / math.log2(3)) / 4
    assert M.ndcg_at_k(Y, P, k=3) == pytest.approx(expected)
    # with k=1 only top-1 hits count
    assert M.ndcg_at_k(Y, P, k=1) == pytest.approx(0.5)


def test_ties_count_against_the_model() -> None:
    y = np.array([0])
    p = np.array([[0.5, 0.5]])
    assert M.ranks_of_true(y, p).tolist() == [2]


def test_micro_and_macro_f1_by_hand() -> None:
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 0, 2])
    # positive labels {1, 2} ("none" = 0 left out)
    # class 1: tp1 fp1(row1) fn0 ; class 2: tp2 fp0 fn1(row4)
    micro = 2 * 3 / (2 * 3 + 1 + 1)
    assert M.micro_f1(y_true, y_pred, labels=[1, 2]) == pytest.approx(micro)
    f1_1 = 2 * 1 / (2 * 1 + 1 + 0)
    f1_2 = 2 * 2 / (2 * 2 + 0 + 1)
    assert M.macro_f1(y_true, y_pred, labels=[1, 2]) == pytest.approx((f1_1 + f1_2) / 2)
    # over all classes, single-label micro F1 is accuracy
    assert M.micro_f1(y_true, y_pred) == pytest.approx(4 / 6)


def test_f1_of_a_class_never_seen_nor_predicted_is_zero() -> None:
    assert M.macro_f1(np.array([0, 0]), np.array([0, 0]), labels=[0, 1]) == pytest.approx(0.5)
    assert M.micro_f1(np.array([0]), np.array([0]), labels=[1]) == 0.0


def test_conversion_metrics_use_argmax_over_products() -> None:
    fns = M.conversion_metrics(positive_labels=[1, 2])
    y = np.array([1, 2, 0])
    p = np.array([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.9, 0.05, 0.05]])
    # predictions 1, 1, 0 -> class 1: tp1 fp1; class 2: fn1 -> micro = 2/(2+1+1)
    assert fns["micro_f1"](y, p) == pytest.approx(0.5)


def test_calibration_of_a_perfectly_calibrated_block() -> None:
    # 10 rows with top-1 confidence 0.8, 8 of them correct -> ECE 0
    y = np.array([0] * 8 + [1] * 2)
    p = np.tile([0.8, 0.2], (10, 1))
    assert M.expected_calibration_error(y, p) == pytest.approx(0.0)
    curve = M.reliability_curve(y, p)
    assert curve["confidence"] == [pytest.approx(0.8)] and curve["accuracy"] == [pytest.approx(0.8)]


def test_input_validation_names_the_shapes() -> None:
    with pytest.raises(ValueError, match="y_true codes"):
        M.log_loss(np.array([3]), np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="proba"):
        M.log_loss(np.array([0, 1]), np.array([0.5, 0.5]))


def test_paired_bootstrap_identical_variant_has_zero_difference() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    p = rng.dirichlet(np.ones(3), 200)
    res = M.paired_bootstrap(y, {"baseline": p, "same": p.copy()}, M.ranking_metrics(), n_boot=50)
    d = res["same"]["diff"]["log_loss"]
    assert d.value == 0.0 and d.low == 0.0 and d.high == 0.0
    m = res["baseline"]["metric"]["log_loss"]
    assert m.low <= m.value <= m.high


def test_paired_bootstrap_detects_a_clearly_better_model() -> None:
    rng = np.random.default_rng(1)
    n = 400
    y = rng.integers(0, 3, n)
    noise = rng.dirichlet(np.ones(3), n)
    good = 0.5 * noise + 0.5 * np.eye(3)[y]
    res = M.paired_bootstrap(
        y, {"baseline": noise, "good": good}, M.ranking_metrics(), n_boot=100, random_state=3
    )
    assert res["good"]["diff"]["log_loss"].high < 0  # lower log loss, interval clear of 0
    assert res["good"]["diff"]["macro_recall_at_1"].low > 0
    with pytest.raises(ValueError, match="baseline"):
        M.paired_bootstrap(y, {"good": good}, M.ranking_metrics())


def test_cluster_resamples_draw_whole_groups() -> None:
    groups = np.array(["a", "b", "a", "c", "b", "a"])
    for rows in M.cluster_resamples(groups, 20, np.random.default_rng(0)):
        drawn = groups[rows]
        for g in set(drawn):  # a group present in a resample brings all of its rows, as many times
            assert (drawn == g).sum() % (groups == g).sum() == 0
    assert M.cluster_resamples(np.array([]), 2, np.random.default_rng(0))[0].size == 0


def test_grouped_bootstrap_is_wider_when_rows_of_a_group_are_copies() -> None:
    """Ten copies of each of 40 rows: a row bootstrap believes 400 independent rows, groups know 40."""
    rng = np.random.default_rng(2)
    y1 = rng.integers(0, 3, 40)
    p1, q1 = rng.dirichlet(np.ones(3), 40), rng.dirichlet(np.ones(3), 40)
    y, p, q, g = (
        np.repeat(y1, 10),
        np.repeat(p1, 10, axis=0),
        np.repeat(q1, 10, axis=0),
        np.repeat(np.arange(40), 10),
    )
    fns = {"log_loss": M.ranking_metrics()["log_loss"]}
    rows = M.paired_bootstrap(y, {"baseline": p, "other": q}, fns, n_boot=200)["other"]["diff"]["log_loss"]
    grouped = M.paired_bootstrap(y, {"baseline": p, "other": q}, fns, n_boot=200, groups=g)["other"]["diff"][
        "log_loss"
    ]
    assert grouped.value == rows.value
    assert (grouped.high - grouped.low) > 2 * (rows.high - rows.low)
