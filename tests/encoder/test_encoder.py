"""The encoder model file: config rules, vocabulary, shapes, masking, padding, checkpoint round-trip."""

from __future__ import annotations

import os

# Before torch loads OpenMP (see clicks2intent/encoder.py): spinning workers crawl on a shared CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from clicks2intent.encoder.model import (  # noqa: E402
    MASK_ID,
    MISSING_ID,
    N_SPECIAL,
    OOV_ID,
    EncoderCheckpoint,
    EncoderConfig,
    Vocabulary,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from clicks2intent.names import columns as C  # noqa: E402

SMALL = EncoderConfig(
    d_model=32, n_heads=4, n_layers=1, d_ff=64, embedding_dim=16, max_len=8, query_buckets=256
)


def _vocabs() -> dict[str, Vocabulary]:
    return {
        C.PAGE_TYPE: Vocabulary(["home", "rates", "apply", "search"]),
        C.CHANNEL: Vocabulary(["web", "app"]),
        C.DEVICE: Vocabulary(["mobile", "desktop"]),
    }


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(SMALL, _vocabs()).eval()


def _batch(lengths: list[int], seed: int = 0, width: int | None = None) -> dict[str, torch.Tensor]:
    """A padded batch of random events (pages, dwell with some missing, rising times, a few queries)."""
    g = torch.Generator().manual_seed(seed)
    b, w = len(lengths), width or max(lengths)
    lengths_t = torch.tensor(lengths)
    valid = torch.arange(w).unsqueeze(0) < lengths_t.unsqueeze(1)
    page = torch.randint(N_SPECIAL, N_SPECIAL + 4, (b, w), generator=g) * valid
    dwell = torch.rand((b, w), generator=g) * 100
    dwell[torch.rand((b, w), generator=g) < 0.2] = float("nan")
    time = torch.cumsum(torch.rand((b, w), generator=g) * 60, dim=1)
    query = (torch.rand((b, w), generator=g) < 0.3).long() * torch.randint(1, 3, (b, w), generator=g) * valid
    table = torch.tensor([[0, 0, 0], [5, 9, 0], [17, 3, 44]])
    return {
        "page": page,
        "dwell": dwell,
        "time": time,
        "channel": torch.full((b, w), N_SPECIAL) * valid,
        "device": torch.full((b, w), N_SPECIAL + 1) * valid,
        "query": query,
        "query_table": table,
        "lengths": lengths_t,
    }


def test_config_rejects_bad_values_naming_the_field() -> None:
    with pytest.raises(ValueError, match="d_model"):
        EncoderConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="max_len"):
        EncoderConfig(max_len=1)
    with pytest.raises(ValueError, match="unknown field"):
        EncoderConfig.from_dict({**EncoderConfig().to_dict(), "surprise": 1})


def test_vocabulary_ranks_by_frequency_and_maps_unknown_and_missing() -> None:
    vocab = Vocabulary.build(["b", "a", "b", "c", "c", "c", None, C.OOV_PAGE_TYPE, "a"], min_count=2)
    assert vocab.tokens == ["c", "a", "b"]  # by count, ties by name; singletons and the OOV token left out
    ids = vocab.lookup(["c", "zzz", None, float("nan"), C.OOV_PAGE_TYPE, "b"])
    assert ids.tolist() == [N_SPECIAL, OOV_ID, MISSING_ID, MISSING_ID, OOV_ID, N_SPECIAL + 2]
    assert len(vocab) == N_SPECIAL + 3
    assert Vocabulary.from_counts({"x": 3, "y": 3, "z": 1}, min_count=2).tokens == ["x", "y"]


def test_output_is_unit_length_with_configured_dimension() -> None:
    model = _model()
    with torch.inference_mode():
        out = model(**_batch([1, 3, 8]))
    assert out.shape == (3, SMALL.embedding_dim)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.isfinite(out).all()


def test_padding_does_not_change_a_sessions_vector() -> None:
    """A session embedded alone and next to a longer one (so with padding) gives the same vector."""
    model = _model()
    both = _batch([3, 8])
    alone = {k: (v[:1, :3] if v.dim() == 2 and k != "query_table" else v) for k, v in both.items()}
    alone["lengths"] = both["lengths"][:1]
    with torch.inference_mode():
        assert torch.allclose(model(**both)[0], model(**alone)[0], atol=1e-5)


def test_events_beyond_a_session_do_not_leak_in() -> None:
    """Changing what sits in padding positions changes nothing."""
    model = _model()
    batch = _batch([2, 6])
    other = {k: v.clone() for k, v in batch.items()}
    other["page"][0, 2:] = N_SPECIAL + 3
    other["dwell"][0, 2:] = 5.0
    with torch.inference_mode():
        assert torch.allclose(model(**batch)[0], model(**other)[0], atol=1e-6)


def test_mask_hides_page_dwell_and_query_of_masked_events() -> None:
    model = _model()
    batch = _batch([6])
    mask = torch.zeros((1, 6), dtype=torch.bool)
    mask[0, 2] = True
    changed = {k: v.clone() for k, v in batch.items()}
    changed["page"][0, 2] = N_SPECIAL + (int(batch["page"][0, 2]) - N_SPECIAL + 1) % 4
    changed["dwell"][0, 2] = 999.0
    changed["query"][0, 2] = 2
    with torch.inference_mode():
        s1, _ = model.encode_events(**batch, mask=mask)
        s2, _ = model.encode_events(**changed, mask=mask)
        assert torch.allclose(s1, s2, atol=1e-6)  # masked: the model cannot see what changed
        u1, _ = model.encode_events(**batch)
        u2, _ = model.encode_events(**changed)
        assert not torch.allclose(u1, u2, atol=1e-4)  # unmasked: it can


def test_order_and_recency_change_the_vector() -> None:
    """Same bag of pages, different order → different embedding (unlike a mean-pooled bag)."""
    model = _model()
    batch = _batch([5])
    batch["page"] = torch.tensor([[4, 5, 6, 7, 4]])
    flipped = {k: v.clone() for k, v in batch.items()}
    flipped["page"] = torch.tensor([[4, 7, 6, 5, 4]])
    with torch.inference_mode():
        assert not torch.allclose(model(**batch), model(**flipped), atol=1e-4)


def test_missing_modalities_and_masked_ids_are_accepted() -> None:
    model = _model()
    batch = _batch([4])
    batch["dwell"][:] = float("nan")
    batch["time"][:] = float("nan")
    batch["channel"][:] = MISSING_ID
    batch["device"][:] = MISSING_ID
    batch["page"][0, 0] = MASK_ID
    batch["page"][0, 1] = OOV_ID
    with torch.inference_mode():
        assert torch.isfinite(model(**batch)).all()


def test_time_buckets_missing_and_monotone() -> None:
    model = _model()
    seconds = torch.tensor([float("nan"), -3.0, 0.0, 1.0, 10.0, 100.0, 1e6])
    ids = model.dwell_bucket(seconds)
    assert ids[0] == MISSING_ID
    assert (ids[1:] >= N_SPECIAL).all() and (ids[1:] < N_SPECIAL + SMALL.n_time_buckets).all()
    assert (ids[2:].diff() >= 0).all() and ids[-1] > ids[3]


def test_init_is_deterministic_for_a_seed() -> None:
    a, b = _model(seed=3).state_dict(), _model(seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = _model(seed=4).state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_checkpoint_round_trip(tmp_path) -> None:
    model = _model()
    ckpt = EncoderCheckpoint(SMALL, _vocabs(), model, {"note": "test", "losses": [1.0, 0.5]})
    path = save_checkpoint(ckpt, tmp_path / "enc" / "checkpoint.pt")
    loaded = load_checkpoint(path)
    assert loaded.config == SMALL
    assert {k: v.tokens for k, v in loaded.vocabularies.items()} == {
        k: v.tokens for k, v in _vocabs().items()
    }
    assert loaded.metadata == {"note": "test", "losses": [1.0, 0.5]}
    batch = _batch([2, 5, 7])
    with torch.inference_mode():
        assert torch.equal(model(**batch), loaded.model(**batch))


def test_checkpoint_errors_are_clear(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"format": 99}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="format"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="vocabularies"):
        build_model(SMALL, {C.PAGE_TYPE: Vocabulary(["a"])})


def test_vocabulary_lookup_is_vectorised_over_numpy_objects() -> None:
    vocab = Vocabulary(["a", "b"])
    ids = vocab.lookup(np.array(["b", None, "q"], dtype=object))
    assert ids.dtype == np.int64 and ids.tolist() == [N_SPECIAL + 1, MISSING_ID, OOV_ID]


@pytest.mark.parametrize("pooling", ["last", "mean", "attention", "last+attention"])
def test_causal_prefix_vectors_equal_the_vectors_of_the_cut_sessions(pooling: str) -> None:
    """One causal pass gives every prefix's vector: what next-event training and the probe rely on."""
    from dataclasses import replace

    torch.manual_seed(0)
    model = build_model(replace(SMALL, n_layers=2, pooling=pooling), _vocabs()).eval()
    batch = _batch([6, 3])
    with torch.no_grad():
        states, padding = model.encode_events(**batch)
        prefixes = model.prefix_vectors(states, padding)
        for k in range(1, 7):
            cut = {n: (t[:1, :k] if t.dim() == 2 and n != "query_table" else t) for n, t in batch.items()}
            cut["lengths"] = torch.tensor([k])
            assert torch.allclose(model(**cut)[0], prefixes[0, k - 1], atol=1e-5), (pooling, k)
        assert torch.allclose(model(**batch), prefixes[torch.arange(2), batch["lengths"] - 1], atol=1e-5)


def test_last_event_shortcut_matches_the_full_pass_and_torchscript() -> None:
    from dataclasses import replace

    torch.manual_seed(1)
    model = build_model(replace(SMALL, n_layers=3), _vocabs()).eval()
    batch = _batch([5, 1, 3, 5])
    with torch.no_grad():
        states, padding = model.encode_events(**batch)
        full = model.pool(states, padding, batch["lengths"])
        fast = model(**batch)
        scripted = torch.jit.script(model)(**batch)
    assert torch.allclose(full, fast, atol=1e-5) and torch.allclose(fast, scripted, atol=1e-5)


def test_bidirectional_variant_still_sees_the_whole_session() -> None:
    from dataclasses import replace

    torch.manual_seed(2)
    model = build_model(replace(SMALL, causal=False, pooling="last+attention"), _vocabs()).eval()
    batch = _batch([4, 4])
    changed = {k: v.clone() for k, v in batch.items()}
    changed["page"][0, 3] = N_SPECIAL + (int(batch["page"][0, 3]) - N_SPECIAL + 1) % 4
    with torch.no_grad():
        states, _ = model.encode_events(**batch)
        states2, _ = model.encode_events(**changed)
    assert not torch.allclose(states[0, 0], states2[0, 0])  # the first event's state sees the last page


@pytest.mark.parametrize("output", ["next", "vector+next"])
def test_published_next_page_distribution(output: str) -> None:
    from dataclasses import replace

    torch.manual_seed(3)
    model = build_model(replace(SMALL, output=output), _vocabs()).eval()
    batch = _batch([3, 1])
    with torch.no_grad():
        out = model(**batch)
        vector = build_model(SMALL, _vocabs()).eval()
        vector.load_state_dict(model.state_dict())
        z = vector(**batch)
        scripted = torch.jit.script(model)(**batch)
    n_next = len(_vocabs()[C.PAGE_TYPE]) - N_SPECIAL
    assert model.output_dim == out.shape[1] == n_next + (SMALL.embedding_dim if output != "next" else 0)
    logp = out[:, -n_next:]
    assert (logp < 0).all() and (logp.exp().sum(dim=1) <= 1 + 1e-5).all()  # real pages only: mass <= 1
    expected = torch.log_softmax(model.next_page_logits(z), dim=-1)[:, N_SPECIAL:]
    assert torch.allclose(logp, expected, atol=1e-5) and torch.allclose(out, scripted, atol=1e-5)
    if output == "vector+next":
        assert torch.allclose(out[:, : SMALL.embedding_dim], z, atol=1e-6)
