"""The attentions trace into one graph (no graph breaks) for torch.compile.

`fullgraph=True` makes any graph break an error; the eager backend checks the tracing
alone, so the test needs no compiler and stays fast on CPU.
"""

from __future__ import annotations

import pytest
import torch

from seq2seq.model.attention import CausalLinearAttention, LinearAttention, SoftmaxAttention
from seq2seq.model.attention.feature_maps import FavorFeatureMap


@pytest.mark.parametrize("kind", ["softmax", "linear", "causal_linear"])
@pytest.mark.parametrize("length", [40, 128])
def test_attention_compiles_without_graph_breaks(kind: str, length: int) -> None:
    torch._dynamo.reset()
    features = FavorFeatureMap(16, num_features=32, seed=0, layer_id=1)
    attention = {
        "softmax": SoftmaxAttention(causal=True),
        "linear": LinearAttention(features),
        "causal_linear": CausalLinearAttention(features, chunk_size=16),
    }[kind]
    q, k, v = (torch.randn(2, 2, length, 16, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, length // 2 :] = False
    compiled = torch.compile(attention, backend="eager", fullgraph=True)
    out = compiled(q, k, v, mask)
    out.sum().backward()
    torch.testing.assert_close(out, attention(q, k, v, mask))
