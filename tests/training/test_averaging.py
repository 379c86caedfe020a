"""RunningAverage: the exact mean of parameters, buffers from the newest, loud mismatches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
import torch
from torch import Tensor

from seq2seq.jobs.average import RunningAverage


def mean_of(states: Sequence[Mapping[str, Tensor]], parameters: set[str]) -> dict[str, Tensor]:
    average = RunningAverage(parameters)
    for index, state in enumerate(states):
        average.add(state, f"checkpoint {index}")
    return average.mean(states[-1])


def test_parameters_are_the_mean_and_buffers_come_from_the_newest_state() -> None:
    states = [
        {"w": torch.tensor([1.0, 2.0]), "projection": torch.tensor([5.0]), "n": torch.tensor(3)},
        {"w": torch.tensor([2.0, 4.0]), "projection": torch.tensor([6.0]), "n": torch.tensor(3)},
        {"w": torch.tensor([6.0, 0.0]), "projection": torch.tensor([7.0]), "n": torch.tensor(3)},
    ]
    averaged = mean_of(states, parameters={"w"})
    assert torch.equal(averaged["w"], torch.tensor([3.0, 2.0]))
    assert torch.equal(averaged["projection"], torch.tensor([7.0]))
    assert torch.equal(averaged["n"], torch.tensor(3))
    # The inputs are untouched (the first float32 state is not summed into in place).
    assert torch.equal(states[0]["w"], torch.tensor([1.0, 2.0]))


def test_the_mean_keeps_the_dtype_and_sums_in_float32() -> None:
    # In bf16, 256 + 1 rounds to 256: a running sum in bf16 would lose the small terms.
    big, small = torch.tensor([256.0]), torch.tensor([1.0])
    states = [{"w": value.to(torch.bfloat16)} for value in (big, small, small)]
    averaged = mean_of(states, parameters={"w"})
    assert averaged["w"].dtype == torch.bfloat16
    assert averaged["w"].item() == 86.0


def test_one_state_is_returned_unchanged_as_a_copy() -> None:
    state = {"w": torch.tensor([0.1, 0.2])}
    averaged = mean_of([state], parameters={"w"})
    assert torch.equal(averaged["w"], state["w"])
    assert averaged["w"].data_ptr() != state["w"].data_ptr()


def test_states_with_other_weights_are_refused() -> None:
    with pytest.raises(
        ValueError, match=r"checkpoint 1 holds other weights than checkpoint 0 \(missing \[\], "
    ):
        mean_of([{"w": torch.zeros(2)}, {"w": torch.zeros(2), "b": torch.zeros(1)}], {"w"})


def test_states_with_other_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"'w' has shape \(2,\) in checkpoint 1 but \(3,\)"):
        mean_of([{"w": torch.zeros(3)}, {"w": torch.zeros(2)}], parameters={"w"})


def test_nothing_to_average_is_an_error() -> None:
    with pytest.raises(ValueError, match="no checkpoints"):
        RunningAverage(set()).mean({})
