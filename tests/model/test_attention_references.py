"""The shared references and case lists (`tests/support`) keep up with the registries.

A kind added to `ATTENTIONS` joins every contract test through the case lists; these
tests fail when it would instead go silently untested: a kind that can be called alone
with `(q, k, v, mask)` but has no plain reference, a feature map with no plain form, a kind
in no direction. The references themselves are checked on what any attention must give.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from seq2seq.model.attention import ATTENTIONS, FEATURE_MAPS, Attention, MultiHeadAttention
from support.attention_cases import (
    BIDIRECTIONAL,
    CAUSAL,
    attention_cases,
    takes_qkv_only,
)
from support.attention_inputs import padding_mask, random_qkv
from support.attention_references import PLAIN_FEATURES, REFERENCES, allowed_keys, reference


def test_every_kind_called_alone_has_a_plain_reference() -> None:
    missing = sorted(name for name in ATTENTIONS if takes_qkv_only(name) and name not in REFERENCES)
    assert not missing, (
        f"attention kinds {missing} take only q, k and v but have no plain reference: add "
        "one to REFERENCES in tests/support/attention_references.py (or, if the kind needs "
        "more per-position inputs from the multi-head wrapper, declare them in its "
        "`extra_inputs`)"
    )
    assert set(REFERENCES) <= set(ATTENTIONS), "REFERENCES names kinds no longer registered"


def test_every_feature_map_has_a_plain_form() -> None:
    missing = sorted(set(FEATURE_MAPS) - set(PLAIN_FEATURES))
    assert not missing, (
        f"feature maps {missing} have no plain form: add one to PLAIN_FEATURES in "
        "tests/support/attention_references.py"
    )


def test_every_kind_is_in_the_case_lists() -> None:
    """A kind in neither direction would be parametrized into no contract test."""
    in_cases = {case.values[0] for case in attention_cases()}
    assert in_cases == set(ATTENTIONS)
    assert set(CAUSAL) | set(BIDIRECTIONAL) == set(ATTENTIONS)


def test_a_kind_without_a_reference_fails_saying_what_to_add() -> None:
    with pytest.raises(LookupError, match=r"'unheard_of' has no plain reference; add one"):
        reference("unheard_of", Attention(), *random_qkv((1, 1, 2, 2), seed=0), None, causal=False)


@pytest.mark.parametrize(("name", "causal", "feature_map"), attention_cases(where=takes_qkv_only))
def test_references_average_the_values_of_the_allowed_keys(
    make_attention: Callable[..., MultiHeadAttention],
    name: str,
    causal: bool,
    feature_map: str | None,
) -> None:
    """Row-normalised weights: constant values come back on every query with a key to
    attend, and a query with none gives zeros (positive q and k, so that no relu row is
    all zero); a value at a key a query may not attend (padded, or later when causal)
    changes nothing for that query."""
    kernel = make_attention(name, causal=causal, feature_map=feature_map).attention
    q, k, _ = (x.abs() for x in random_qkv((4, 2, 9, 8), seed=0))
    mask = padding_mask(4, 9)
    v = torch.full_like(k, 3.0)
    out = reference(name, kernel, q, k, v, mask, causal=causal).transpose(1, 2)  # (B, L, H, Dh)
    has_key = allowed_keys(
        mask,
        batch=4,
        query_length=9,
        key_length=9,
        causal=causal,
        window=getattr(kernel, "window", None),
    )[:, 0].any(-1)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[has_key], torch.full_like(out[has_key], 3.0))
    assert (out[~has_key] == 0).all()

    v[:, :, -1] = 100.0  # the last key: padded in rows 1 and 3, and after every other query
    moved = reference(name, kernel, q, k, v, mask, causal=causal).transpose(1, 2)
    unmoved = (slice(None), slice(0, -1)) if causal else ([1, 3],)
    torch.testing.assert_close(moved[unmoved], out[unmoved], atol=0, rtol=0)
