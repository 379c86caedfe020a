"""average_weights: the exact mean of parameters, buffers from the newest, loud mismatches."""

from __future__ import annotations

import pytest
import torch

from seq2seq.training.averaging import average_weights


def test_parameters_are_the_mean_and_buffers_come_from_the_last_state() -> None:
    states = [
        {"w": torch.tensor([1.0, 2.0]), "projection": torch.tensor([5.0]), "n": torch.tensor(3)},
        {"w": torch.tensor([2.0, 4.0]), "projection": torch.tensor([6.0]), "n": torch.tensor(3)},
        {"w": torch.tensor([6.0, 0.0]), "projection": torch.tensor([7.0]), "n": torch.tensor(3)},
    ]
    averaged = average_weights(states, parameters={"w"})
    assert torch.equal(averaged["w"], torch.tensor([3.0, 2.0]))
    assert torch.equal(averaged["projection"], torch.tensor([7.0]))
    assert torch.equal(averaged["n"], torch.tensor(3))


def test_the_mean_keeps_the_dtype_and_is_computed_in_float64() -> None:
    # In bf16, 256 + 1 rounds to 256: a running sum in bf16 would lose the small terms.
    big, small = torch.tensor([256.0], dtype=torch.bfloat16), torch.tensor([1.0])
    states = [{"w": big}, {"w": small.to(torch.bfloat16)}, {"w": small.to(torch.bfloat16)}]
    averaged = average_weights(states, parameters={"w"})
    assert averaged["w"].dtype == torch.bfloat16
    assert averaged["w"].item() == pytest.approx(86.0, abs=0.5)


def test_one_state_is_returned_unchanged_as_a_copy() -> None:
    state = {"w": torch.tensor([0.1, 0.2])}
    averaged = average_weights([state], parameters={"w"})
    assert torch.equal(averaged["w"], state["w"])
    assert averaged["w"].data_ptr() != state["w"].data_ptr()


def test_states_with_other_weights_are_refused() -> None:
    with pytest.raises(ValueError, match=r"missing \['b'\].*only checkpoints of one model"):
        average_weights(
            [{"w": torch.zeros(2)}, {"w": torch.zeros(2), "b": torch.zeros(1)}], parameters={"w"}
        )


def test_states_with_other_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"'w' has shape \(3,\) in checkpoint 0 but \(2,\)"):
        average_weights([{"w": torch.zeros(3)}, {"w": torch.zeros(2)}], parameters={"w"})


def test_nothing_to_average_is_an_error() -> None:
    with pytest.raises(ValueError, match="no checkpoints"):
        average_weights([], parameters=set())
