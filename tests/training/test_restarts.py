"""Which seeds restarts train from, and which restart is kept as the best single network."""

from __future__ import annotations

from pipeline.training.fit import FitResult
from pipeline.training.restarts import best_restart, restart_seeds


def result(best_value: float) -> FitResult:
    return FitResult(spec={}, state_dict={}, history=[], best_epoch=0, best_value=best_value, epochs=1, device="cpu")


def test_seeds_count_up_from_the_seed_and_wrap_at_32_bits() -> None:
    assert restart_seeds(42, 3) == [42, 43, 44]
    assert restart_seeds(2**32 - 2, 3) == [2**32 - 2, 2**32 - 1, 0]
    assert restart_seeds(7, 1) == [7]


def test_best_restart_follows_the_monitor_direction_and_keeps_the_first_on_a_tie() -> None:
    results = [result(0.5), result(0.2), result(0.9), result(0.2)]
    assert best_restart(results, "min") == 1  # a loss: lowest wins, the earlier of two equal ones
    assert best_restart(results, "max") == 2  # an accuracy: highest wins
