"""Every attention kind traces into one graph (no graph breaks) for torch.compile.

Each registered kind runs inside its multi-head wrapper (which computes whatever the kind
takes besides q, k and v), causal where the kind supports it, with FAVOR+ where it uses a
feature map, over several chunks. `fullgraph=True` makes any graph break an error; the
eager backend checks the tracing alone, so the test needs no compiler and stays fast on CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from seq2seq.model.attention import ATTENTIONS, MultiHeadAttention
from support.tiny_models import D_MODEL


@pytest.mark.parametrize("kind", sorted(ATTENTIONS))
@pytest.mark.parametrize("length", [40, 128])
def test_attention_compiles_without_graph_breaks(
    make_attention: Callable[..., MultiHeadAttention], kind: str, length: int
) -> None:
    torch._dynamo.reset()
    attention = make_attention(
        kind,
        causal=ATTENTIONS[kind].supports_causal,
        feature_map="favor" if ATTENTIONS[kind].uses_feature_map else None,
        chunk_size=16,
    )
    x = torch.randn(2, length, D_MODEL, requires_grad=True)
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, length // 2 :] = False
    compiled = torch.compile(attention, backend="eager", fullgraph=True)
    out = compiled(x, None, mask)
    out.sum().backward()
    torch.testing.assert_close(out, attention(x, None, mask))
