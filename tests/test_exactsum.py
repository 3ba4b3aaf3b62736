"""Exact sums (store/exactsum.py) held to Fractions: every mean is the exact mean of the float64
values rounded once, whatever the values' magnitudes, signs and order of addition."""

import re
from fractions import Fraction

import numpy as np
import pytest

from store.exactsum import add_by_group, exact_mean, exact_means, scale_and_limbs


def exact(values):
    return float(sum(map(Fraction, values)) / len(values))


def digits_value(digits, scale):
    total = sum(Fraction(int(d)) * 2 ** (24 * k) for k, d in enumerate(digits))
    return total / Fraction(2) ** scale


VALUE_SETS = {
    "one decimal": [16.9, 12.2, 25.4, 10.1, 28.2],
    "huge": [1e308, 1e308, 1.7e308],
    "tiny and subnormal": [5e-324, 1e-310, 2.5e-300, 0.0],
    "signs": [-0.1, 0.3, -7.25, 1e-5, 0.0, -0.0],
    "wide range": [1e300, 1e-300, -1e300, 3.0],
    "integers": [1.0, 2.0, 3.0, 2.0**60],
}


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_digits_hold_each_value_exactly(name):
    values = np.array(VALUE_SETS[name])
    scale, limbs = scale_and_limbs(values)
    for value, digits in zip(values.tolist(), limbs, strict=True):
        assert digits_value(digits, scale) == Fraction(value)


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_mean_is_the_exact_mean_rounded_once(name):
    values = np.array(VALUE_SETS[name])
    scale, limbs = scale_and_limbs(values)
    assert exact_mean(limbs.sum(axis=0), len(values), scale) == exact(VALUE_SETS[name])


def test_random_groups_in_any_order_match_fractions():
    rng = np.random.default_rng(7)
    values = np.round(rng.uniform(0, 100, 20_000), 1) * rng.choice([1.0, -1.0, 1e-3], 20_000)
    group = rng.integers(0, 300, len(values))
    scale, limbs = scale_and_limbs(values)
    sums = add_by_group(limbs, group, 300)
    counts = np.bincount(group, minlength=300)
    means = exact_means(sums, counts, scale)
    for g in range(300):
        assert means[g] == exact(values[group == g].tolist()), g
    # added in another order (shuffled, then grouped again), the digits and so the means are equal
    order = rng.permutation(len(values))
    again = add_by_group(limbs[order], group[order], 300)
    assert (again == sums).all()


def test_float_sum_order_would_differ_but_the_mean_does_not():
    values = [0.1] * 10 + [1e16, -1e16]
    scale, limbs = scale_and_limbs(np.array(values))
    assert sum(values) / len(values) != exact(values)  # a float64 running sum loses the 0.1s
    assert exact_mean(limbs.sum(axis=0), len(values), scale) == exact(values)


def test_huge_values_give_finite_exact_means_and_too_spread_ones_are_refused(tmp_path):
    from compute.queries import run_query
    from store.csvfile import DataFileError
    from store.dataset import load_dataset

    head = "LocationDesc,Question,Data_Value,StratificationCategory1,Stratification1\n"
    path = tmp_path / "huge.csv"
    path.write_text(head + "Ohio,Q,1e308,Sex,Male\nOhio,Q,1.7e308,Sex,Female\nGuam,Q,0.5,Sex,Male\n")
    dataset = load_dataset(path)
    assert run_query(dataset, "state_mean", "Q", "Ohio") == {"Ohio": exact([1e308, 1.7e308])}
    assert run_query(dataset, "global_mean", "Q") == {"global_mean": exact([1e308, 1.7e308, 0.5])}
    path.write_text(head + "Ohio,Q,1.7e308,Sex,Male\nGuam,Q,-1.7e308,Sex,Male\n")
    with pytest.raises(DataFileError, match=re.escape("line 2, column Data_Value: '1.7e308' is too large")):
        load_dataset(path)
