"""FAVOR+ features and their redraws.

The kernel estimate and the orthogonal projection are checked against their definitions
(Choromanski et al., 2020); redraws must be a function of (seed, layer, optimizer step)
alone, and the projection must travel with the state dict.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from seq2seq.model.attention import (
    FEATURE_MAPS,
    EluFeatureMap,
    FavorFeatureMap,
    ReluFeatureMap,
)
from seq2seq.model.attention.feature_maps import (
    make_feature_map_factory,
    orthogonal_gaussian,
    redraw_feature_maps,
)

DH = 8


def projections(model: nn.Module) -> list[Tensor]:
    return [m.projection.clone() for m in model.modules() if isinstance(m, FavorFeatureMap)]


def assert_all_equal(a: list[Tensor], b: list[Tensor]) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def assert_all_differ(a: list[Tensor], b: list[Tensor]) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert not torch.allclose(x, y)


def test_favor_projection_directions_are_isotropic() -> None:
    """Rows are marginally N(0, I): their mean over many blocks is near zero."""
    projection = FavorFeatureMap(DH, num_features=4000, seed=0, layer_id=1).projection
    assert projection.mean(0).abs().max() < 0.06


def test_favor_kernel_estimate_approximates_softmax_kernel() -> None:
    """E[phi(q) . phi(k)] = exp(q . k / sqrt(Dh)); with many features the estimate is close."""
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(64, DH, generator=generator) * 0.5
    k = torch.randn(64, DH, generator=generator) * 0.5
    exact = torch.exp(q @ k.T / math.sqrt(DH))
    estimates = []
    for seed in range(4):
        favor = FavorFeatureMap(DH, num_features=2048, seed=seed, layer_id=1)
        # Unstabilised features on both sides: the query max-shift is a per-row scale.
        estimates.append(favor(q, is_query=False) @ favor(k, is_query=False).T)
    estimate = torch.stack(estimates).mean(0)
    relative = (estimate - exact).abs() / exact
    # About 0.017 with Haar-distributed blocks; about 0.075 with the biased ones.
    assert relative.mean() < 0.035


def test_favor_query_stabiliser_is_a_per_query_scale() -> None:
    """The query max-shift rescales each query's features: attention weights are unchanged."""
    favor = FavorFeatureMap(DH, num_features=24, seed=3, layer_id=2)
    x = torch.randn(2, 3, 5, DH)
    stabilised, plain = favor(x, is_query=True), favor(x, is_query=False)
    torch.testing.assert_close(
        stabilised / stabilised.sum(-1, keepdim=True), plain / plain.sum(-1, keepdim=True)
    )
    # The largest feature of each query is exp(0): nothing can overflow.
    torch.testing.assert_close(stabilised.amax(-1), torch.ones(2, 3, 5))


@pytest.mark.parametrize("num_features", [8, 20, 3])
def test_favor_projection_rows_orthogonal_within_blocks(num_features: int) -> None:
    favor = FavorFeatureMap(DH, num_features=num_features, seed=5, layer_id=0)
    w = favor.projection.double()
    assert w.shape == (num_features, DH)
    assert favor.projection.dtype == torch.float32
    for start in range(0, num_features, DH):
        block = w[start : start + DH]
        gram = block @ block.T
        off_diagonal = gram - torch.diag(torch.diagonal(gram))
        assert off_diagonal.abs().max() < 1e-4 * gram.diagonal().max()
    # Rows are rescaled to chi(Dh) norms, so their squared norms average about Dh.
    many = FavorFeatureMap(DH, num_features=4096, seed=5, layer_id=0).projection
    assert abs(many.pow(2).sum(-1).mean().item() - DH) < 0.5


@pytest.mark.parametrize("name", FEATURE_MAPS)
def test_feature_maps_are_non_negative_float32(name: str) -> None:
    feature_map = make_feature_map_factory(name, nb_features=16, seed=0)(DH, 1)
    x = torch.randn(2, 3, 7, DH).to(torch.bfloat16) * 4
    for is_query in (True, False):
        features = feature_map(x, is_query=is_query)
        assert features.dtype == torch.float32
        assert features.shape == (2, 3, 7, feature_map.num_features)
        assert (features >= 0).all() and features.isfinite().all()


def test_feature_map_classes() -> None:
    factory = make_feature_map_factory
    assert isinstance(factory("elu", nb_features=5, seed=0)(DH, 1), EluFeatureMap)
    assert isinstance(factory("relu", nb_features=5, seed=0)(DH, 1), ReluFeatureMap)
    favor = factory("favor", nb_features=5, seed=0)(DH, 1)
    assert isinstance(favor, FavorFeatureMap) and favor.num_features == 5


@pytest.fixture
def favor_model(
    make_config: Callable[..., Any], make_model: Callable[..., Any]
) -> Callable[..., Any]:
    """An encoder-decoder whose every attention (self, causal, cross) uses FAVOR+."""
    cfg = make_config(
        encoder="linear", decoder="causal_linear", cross="linear", linear={"feature_map": "favor"}
    )

    def build(seed: int) -> nn.Module:
        return make_model(cfg, seed=seed).eval()

    return build


def test_projections_reproducible_from_seed_and_distinct_per_layer(
    favor_model: Callable[..., Any],
) -> None:
    a, b, c = favor_model(1), favor_model(1), favor_model(2)
    assert len(projections(a)) == 6  # 2 encoder self, 2 decoder self, 2 cross
    assert_all_equal(projections(a), projections(b))
    assert_all_differ(projections(a), projections(c))
    first = projections(a)
    assert all(not torch.allclose(x, y) for i, x in enumerate(first) for y in first[i + 1 :])

    for step in (3, 6, 7, 9):
        assert redraw_feature_maps(a, optimizer_step=step, interval=3) == (step % 3 == 0)
        assert redraw_feature_maps(b, optimizer_step=step, interval=3) == (step % 3 == 0)
        redraw_feature_maps(c, optimizer_step=step, interval=3)
        assert_all_equal(projections(a), projections(b))
        assert_all_differ(projections(a), projections(c))


def test_redraw_only_at_multiples_of_the_interval(favor_model: Callable[..., Any]) -> None:
    model = favor_model(0)
    seen = [projections(model)]
    for step in range(1, 10):
        before = projections(model)
        redrew = redraw_feature_maps(model, optimizer_step=step, interval=4)
        after = projections(model)
        assert redrew == (step % 4 == 0)
        if redrew:
            assert_all_differ(before, after)
            for earlier in seen:
                assert_all_differ(earlier, after)
            seen.append(after)
        else:
            assert_all_equal(before, after)
    assert len(seen) == 3


def test_redraw_depends_on_the_step_alone(favor_model: Callable[..., Any]) -> None:
    """A resumed run redraws to the same matrices as an unbroken one."""
    unbroken, resumed = favor_model(4), favor_model(4)
    for step in range(1, 13):
        redraw_feature_maps(unbroken, optimizer_step=step, interval=2)
    redraw_feature_maps(resumed, optimizer_step=12, interval=2)
    assert_all_equal(projections(unbroken), projections(resumed))


def test_interval_zero_never_redraws(favor_model: Callable[..., Any]) -> None:
    model = favor_model(0)
    initial = projections(model)
    for step in (0, 1, 5, 1000):
        assert not redraw_feature_maps(model, optimizer_step=step, interval=0)
    assert_all_equal(initial, projections(model))


def test_projection_survives_state_dict_round_trip(
    favor_model: Callable[..., Any], make_batch: Callable[..., Any]
) -> None:
    trained = favor_model(1)
    redraw_feature_maps(trained, optimizer_step=6, interval=3)
    fresh = favor_model(2)
    batch = make_batch([7, 4], [6, 3])
    args = (batch.src, batch.src_mask, batch.tgt, batch.tgt_mask)
    with torch.no_grad():
        expected = trained(*args)
        assert not torch.allclose(fresh(*args), expected)
        assert any(name.endswith("projection") for name in trained.state_dict())
        fresh.load_state_dict(trained.state_dict())
        assert_all_equal(projections(fresh), projections(trained))
        torch.testing.assert_close(fresh(*args), expected, atol=0, rtol=0)


def test_any_seed_draws_a_projection_and_small_seeds_keep_theirs() -> None:
    big = FavorFeatureMap(8, num_features=8, seed=2**40, layer_id=3)
    assert torch.isfinite(big.projection).all()
    assert not torch.equal(
        big.projection, FavorFeatureMap(8, num_features=8, seed=1, layer_id=3).projection
    )
    # Seeds that fitted the generator before the reduction draw what they drew then.
    generator = torch.Generator().manual_seed((1234 * 1_000_003 + 2) * 1_000_003)
    assert torch.equal(
        FavorFeatureMap(8, num_features=8, seed=1234, layer_id=2).projection,
        orthogonal_gaussian(8, 8, generator),
    )
