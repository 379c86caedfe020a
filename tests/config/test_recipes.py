"""A recipe beside a group chosen on the same command line: `trainer=debug` applies after
the recipe, and a recipe value that replaces another group's is named in one line."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from seq2seq.config.recipes import warn_recipe_overrides

Compose = Callable[..., DictConfig]


def test_a_debug_trainer_beside_a_recipe_runs_its_few_steps(compose_config: Compose) -> None:
    recipe = compose_config("experiment=toy_reverse", tiny=False)
    debug = compose_config("experiment=toy_reverse", "trainer=debug", tiny=False)
    assert recipe.trainer.max_steps == 1200
    assert (debug.trainer.max_steps, debug.trainer.eval_every) == (4, 2)
    # The recipe's other trainer values stay: only the debug group's keys change.
    assert debug.trainer.metrics == recipe.trainer.metrics


def test_each_recipe_value_over_a_chosen_group_gets_one_line(compose_config: Compose) -> None:
    typed = ["experiment=g2p_cmudict", "model=tiny"]
    cfg = compose_config(*typed, tiny=False)
    lines = warn_recipe_overrides(cfg, typed, {"experiment": "g2p_cmudict", "model": "tiny"})
    assert "experiment=g2p_cmudict sets model.d_model=256 over model=tiny's 32" in lines[0]
    keys = {line.split(" sets ")[1].split("=")[0] for line in lines}
    assert keys == {"model.d_model", "model.d_ff", "model.max_len", "model.dropout"} | {
        "model.encoder.layers",
        "model.decoder.layers",
    }
    assert all("type " in line for line in lines)


def test_values_typed_by_the_user_or_equal_to_the_group_are_not_named(
    compose_config: Compose,
) -> None:
    typed = ["experiment=g2p_cmudict", "model=tiny", "model.d_model=64"]
    cfg = compose_config(*typed, tiny=False)
    lines = warn_recipe_overrides(cfg, typed, {"experiment": "g2p_cmudict", "model": "tiny"})
    assert not any("model.d_model" in line for line in lines)
    assert not any("model.heads" in line for line in lines)  # the recipe's 4 is tiny's too


def test_no_recipe_no_warning(compose_config: Compose) -> None:
    typed = ["model=tiny", "data=reverse"]
    cfg = compose_config(*typed, tiny=False)
    assert warn_recipe_overrides(cfg, typed, {"model": "tiny", "data": "reverse"}) == []
