import math

import pytest

from seglab.optim import lr_factor


def test_linear_warmup_then_poly_decay_to_zero():
    f = lr_factor("poly", total_steps=110, warmup_steps=10, power=1.0)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5)
    assert f(110) == pytest.approx(0.0)


def test_cosine_decays_to_min_lr_ratio():
    f = lr_factor("cosine", total_steps=100, min_lr_ratio=0.1)
    assert f(0) == pytest.approx(1.0)
    assert f(50) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(100) == pytest.approx(0.1)
    assert f(25) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_an_unbounded_run_has_no_schedule():
    with pytest.raises(ValueError, match="finite number of steps"):
        lr_factor("poly", total_steps=0)
