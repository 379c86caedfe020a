"""Feature maps phi for the linear attentions: `favor` (FAVOR+), `elu` and `relu`.

A feature map turns per-head queries or keys `(B, H, L, Dh)` into non-negative features
`(B, H, L, m)` so that `phi(q) . phi(k)` stands in for the softmax kernel. Features are
always returned in float32: the linear attentions keep their sums in float32 too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FeatureMap(nn.Module):
    """Base class: `forward(x, is_query, mask, all_keys)` maps `(B, H, L, Dh)` to float32
    `(B, H, L, m)`; rows where `mask: (B, L)` is False (padded keys) are all zero.
    `all_keys`: every key is visible to every query (non-causal), so a scale shared by
    all keys of a head may depend on all of them."""

    num_features: int
    kind: str
    """The registry name (`favor`, `elu`, `relu`); the Triton kernels form this map themselves."""

    def forward(
        self, x: Tensor, *, is_query: bool, mask: Tensor | None = None, all_keys: bool = False
    ) -> Tensor:
        raise NotImplementedError

    def vjp(
        self, x: Tensor, features: Tensor, grad: Tensor, *, mask: Tensor | None = None
    ) -> Tensor:
        """float32 `(B, H, L, Dh)` gradient with respect to `x` of `(features * grad).sum()`,
        where `features: (B, H, L, m)` is `forward(x, ..., mask=mask)`.

        The memory-lean backward recomputes the features instead of saving them and calls this
        rather than autograd; it hands over `grad` to be overwritten. Stabilizing shifts (a
        query's max, the keys' shared max) are constants of the forward pass and get no
        gradient, as in `forward`'s `detach`."""
        raise NotImplementedError


def _zero_masked(features: Tensor, mask: Tensor | None) -> Tensor:
    return features if mask is None else features * mask[:, None, :, None]


class _ElementwiseFeatureMap(FeatureMap):
    """phi(x) = f(x) applied elementwise, in float32; m = Dh."""

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.num_features = head_dim

    @staticmethod
    def function(x: Tensor) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def derivative(features: Tensor) -> Tensor:
        """f'(x) from `features = f(x)` alone, 0 where the features were zeroed (padding)."""
        raise NotImplementedError

    def forward(
        self, x: Tensor, *, is_query: bool, mask: Tensor | None = None, all_keys: bool = False
    ) -> Tensor:
        return _zero_masked(self.function(x.float()), mask)

    def vjp(
        self, x: Tensor, features: Tensor, grad: Tensor, *, mask: Tensor | None = None
    ) -> Tensor:
        return grad.mul_(self.derivative(features))


class EluFeatureMap(_ElementwiseFeatureMap):
    """elu(x) + 1 (Katharopoulos et al., 2020); m = Dh."""

    kind = "elu"

    @staticmethod
    def function(x: Tensor) -> Tensor:
        return F.elu(x).add_(1.0)

    @staticmethod
    def derivative(features: Tensor) -> Tensor:
        # elu(x) + 1 is x + 1 > 1 where x > 0 (slope 1) and exp(x) <= 1 elsewhere (its own
        # slope), so the slope is min(features, 1): one pass, no comparison with x.
        return features.clamp_max(1.0)


class ReluFeatureMap(_ElementwiseFeatureMap):
    """relu(x); m = Dh. A row can be all zero: the attentions then give 0 for it (see
    `SMALLEST_DENOMINATOR`), not a division by zero."""

    kind = "relu"

    @staticmethod
    def function(x: Tensor) -> Tensor:
        return F.relu(x)

    @staticmethod
    def derivative(features: Tensor) -> Tensor:
        return (features > 0).float()


def orthogonal_gaussian(num_rows: int, num_cols: int, generator: torch.Generator) -> Tensor:
    """Rows of blocks of orthogonal vectors, each row rescaled to a chi-distributed norm.

    Returns `(num_rows, num_cols)` float32: the FAVOR+ projection `W` whose rows are
    marginally N(0, I) but exactly orthogonal within each block of `num_cols` rows.
    """
    blocks = []
    for start in range(0, num_rows, num_cols):
        gaussian = torch.randn(num_cols, num_cols, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(gaussian)
        # Fixing the signs by diag(R) makes Q Haar-distributed; without it the directions
        # lean towards the axes and the FAVOR+ estimate is biased.
        q = q * torch.sign(torch.diagonal(r))[None, :]
        blocks.append(q.T[: min(num_cols, num_rows - start)])
    directions = torch.cat(blocks, dim=0)
    norms = torch.randn(num_rows, num_cols, generator=generator, dtype=torch.float64).norm(dim=1)
    return (directions * norms[:, None]).float()


class FavorFeatureMap(FeatureMap):
    """FAVOR+ positive orthogonal random features (Choromanski et al., 2020).

    `phi(x) = exp(w_i . x' - |x'|^2 / 2) / sqrt(m)` with `x' = x * Dh^-1/4`, computed in
    float32. Queries subtract their own max over features (it cancels between numerator and
    denominator); keys use no stabilizer, since any per-key or future-dependent scale would
    change the attention weights. Key features stay bounded by `exp(|w|^2 / 2)`.

    The projection is a buffer drawn from `(seed, layer_id, draw)` alone, so a run and a
    resumed run hold the same matrices; `redraw(draw)` replaces it in place.
    """

    projection: Tensor
    kind = "favor"

    def __init__(self, head_dim: int, *, num_features: int, seed: int, layer_id: int) -> None:
        super().__init__()
        assert num_features >= 1, num_features
        self.num_features = num_features
        self.head_dim = head_dim
        self.seed = seed
        self.layer_id = layer_id
        self.register_buffer("projection", self._draw(0))

    def _draw(self, draw: int) -> Tensor:
        # Reduced to the generator's 64 bits, so any config seed works; a negative value
        # seeds as its two's complement, so the seeds that fitted draw what they always did.
        generator = torch.Generator().manual_seed(
            ((self.seed * 1_000_003 + self.layer_id) * 1_000_003 + draw) % (1 << 64)
        )
        return orthogonal_gaussian(self.num_features, self.head_dim, generator)

    @torch.no_grad()
    def redraw(self, draw: int) -> None:
        self.projection.copy_(self._draw(draw))

    def forward(
        self, x: Tensor, *, is_query: bool, mask: Tensor | None = None, all_keys: bool = False
    ) -> Tensor:
        # Every per-row term (|x'|^2 / 2, log sqrt(m), +inf for padded keys) is folded into
        # one (B, H, L, 1) offset, so the (B, H, L, m) tensor sees a single subtraction
        # and the exp; the Dh^-1/4 scale is folded into the small projection.
        x = x.float()
        scale = self.head_dim**-0.25
        offset = (0.5 * scale * scale) * (x * x).sum(-1, keepdim=True)
        offset = offset + 0.5 * math.log(self.num_features)
        if mask is not None:
            offset = offset.masked_fill(~mask[:, None, :, None], math.inf)
        # The shifts and the exp work in place: the (B, H, L, m) tensor is allocated once.
        logits = (x @ self.scaled_projection().T).sub_(offset)
        if is_query:
            logits = logits.sub_(logits.detach().amax(-1, keepdim=True))
        elif all_keys:
            # One shift for all keys of a head cancels in the attention weights and keeps
            # large-norm keys from underflowing to zero. Causal attention cannot use it:
            # the max would look at future keys.
            shift = logits.detach().amax(dim=(-2, -1), keepdim=True)
            logits = logits.sub_(torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift)))
        return logits.exp_()

    def scaled_projection(self) -> Tensor:
        """float32 `(m, Dh)`: the projection with the `Dh^-1/4` input scale folded in."""
        return self.projection.float() * self.head_dim**-0.25

    def vjp(
        self, x: Tensor, features: Tensor, grad: Tensor, *, mask: Tensor | None = None
    ) -> Tensor:
        # logits = x W'^T - (s^2 / 2) |x|^2 - const, s = Dh^-1/4, W' = s W; padded keys have
        # zero features, so zero logit gradients.
        logit_grad = grad.mul_(features)
        x = x.float()
        scale_squared = self.head_dim**-0.5
        return (
            logit_grad @ self.scaled_projection()
            - (scale_squared * logit_grad.sum(-1, keepdim=True)) * x
        )


FeatureMapFactory = Callable[[int, int], FeatureMap]
"""`(head_dim, layer_id) -> FeatureMap`: build.py closes over the remaining settings."""

FEATURE_MAPS: dict[str, Callable[..., FeatureMap]] = {
    "favor": lambda head_dim, layer_id, *, nb_features, seed: FavorFeatureMap(
        head_dim, num_features=nb_features, seed=seed, layer_id=layer_id
    ),
    "elu": lambda head_dim, layer_id, *, nb_features, seed: EluFeatureMap(head_dim),
    "relu": lambda head_dim, layer_id, *, nb_features, seed: ReluFeatureMap(head_dim),
}
"""Feature maps by config name: `(head_dim, layer_id, *, nb_features, seed) -> FeatureMap`
(the deterministic ones ignore the random-feature settings)."""


def make_feature_map_factory(name: str, *, nb_features: int, seed: int) -> FeatureMapFactory:
    """The factory for feature map `name`; unknown names fail listing the valid ones."""
    try:
        build = FEATURE_MAPS[name]
    except KeyError:
        raise ValueError(
            f"model.linear.feature_map={name!r} is unknown; choose one of {list(FEATURE_MAPS)}"
        ) from None
    return lambda head_dim, layer_id: build(head_dim, layer_id, nb_features=nb_features, seed=seed)


def favor_maps(module: nn.Module) -> Iterator[FavorFeatureMap]:
    for child in module.modules():
        if isinstance(child, FavorFeatureMap):
            yield child


def redraw_feature_maps(module: nn.Module, *, optimizer_step: int, interval: int) -> bool:
    """Redraw every FAVOR+ projection in `module` when `optimizer_step` hits the interval.

    The draw index is `optimizer_step // interval`, so the matrices depend on the step alone
    and a resumed run redraws exactly as an unbroken one. Returns whether it redrew.
    """
    if interval <= 0 or optimizer_step <= 0 or optimizer_step % interval:
        return False
    for feature_map in favor_maps(module):
        feature_map.redraw(optimizer_step // interval)
    return True
