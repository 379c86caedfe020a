"""Position-wise feed-forward: `W2 act(W1 x)`, or `W2 (act(W1 x) * W3 x)` when gated."""

from __future__ import annotations

from torch import Tensor, nn

from seq2seq.model.dropout import Dropout


class FeedForward(nn.Module):
    def __init__(
        self, d_model: int, d_ff: int, *, activation: nn.Module, gated: bool, dropout: float
    ) -> None:
        super().__init__()
        self.gated = gated
        # The gated kinds compute W1 x and W3 x in one matmul, then split.
        self.w_in = nn.Linear(d_model, 2 * d_ff if gated else d_ff)
        self.activation = activation
        self.dropout = Dropout(dropout)
        self.w_out = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        """`x: (B, L, D) -> (B, L, D)`."""
        hidden = self.w_in(x)
        if self.gated:
            hidden, gate = hidden.chunk(2, dim=-1)
            hidden = self.activation(hidden) * gate
        else:
            hidden = self.activation(hidden)
        return self.w_out(self.dropout(hidden))
