"""Exact sums of float64 values, so that every mean is the correctly rounded mean of its values.

A float64 sum depends on the order of its terms, so a mean computed over cells (or in any order other
than the file's) can differ from another route's mean of the same rows in the last digits. Here
every value is split into integers that add exactly: a float64 is a 53-bit integer times a power of
two, so with one scale S per data set (the finest power of two any value uses), value * 2**S is an
integer, kept as LIMBS base-2**24 digits. Digits of any number of rows add exactly in int64, in any
order (cells, then groups of cells), and a mean is then one correctly rounded division of Python
ints: the float64 nearest to the true mean of the float64 values, the same for every route and every
order (what `statistics.mean` returns).
"""

from __future__ import annotations

import numpy as np

LIMB_BITS = 24
_MASK = np.uint64((1 << LIMB_BITS) - 1)
_MANTISSA_BITS = 53


def scale_and_limbs(values: np.ndarray) -> tuple[int, np.ndarray]:
    """The scale S and a (rows, limbs) int64 array whose digits give each value * 2**S exactly:
    value * 2**S == sum(limbs[:, k] << (LIMB_BITS * k)). Negative values have negative digits."""
    mantissa, exponent = np.frexp(np.abs(values))
    whole = (mantissa * 2.0**_MANTISSA_BITS).astype(np.uint64)  # exact: a 53-bit integer
    power = exponent.astype(np.int64) - _MANTISSA_BITS  # |value| == whole * 2**power
    nonzero = whole != 0
    scale = int(-power[nonzero].min()) if nonzero.any() else 0
    shift = np.where(nonzero, power + scale, 0)
    top_bit = int(shift.max(initial=0)) + _MANTISSA_BITS
    limbs = np.zeros((len(values), max(1, -(-(top_bit + 1) // LIMB_BITS))), dtype=np.int64)
    negative = values < 0
    for digit in range(limbs.shape[1]):
        # The bits [24 * digit, 24 * digit + 24) of whole << shift; unsigned shifts wrap, and the mask
        # keeps only low bits, so a left shift past 64 bits loses nothing the digit holds.
        right = LIMB_BITS * digit - shift
        moved = np.where(
            right >= 0,
            whole >> np.clip(right, 0, 63).astype(np.uint64),
            whole << np.clip(-right, 0, 63).astype(np.uint64),
        )
        part = (moved & _MASK).astype(np.int64)
        limbs[:, digit] = np.where(negative, -part, part)
    return scale, limbs


def add_by_group(limbs: np.ndarray, group: np.ndarray, groups: int) -> np.ndarray:
    """The digit sums of each group of rows (group[i] in [0, groups)), exactly, as int64.

    bincount adds in float64, exact while a group's digit sum stays below 2**53, that is for groups
    of fewer than 2**29 rows; the loader's files are far smaller."""
    columns = [np.bincount(group, weights=limbs[:, digit], minlength=groups) for digit in range(limbs.shape[1])]
    return np.stack(columns, axis=1).astype(np.int64)  # scale_and_limbs gives at least one digit


def exact_means(sums: np.ndarray, counts: np.ndarray, scale: int) -> np.ndarray:
    """Each row of digit sums divided by its count, correctly rounded to float64."""
    means = [_mean(digits, count, scale) for digits, count in zip(sums.tolist(), counts.tolist(), strict=True)]
    return np.array(means, dtype=np.float64)


def exact_mean(sums: np.ndarray, count: int, scale: int) -> float:
    """One mean: the digit sums of a group (a row of `sums`, or all rows added)."""
    return _mean(sums.tolist(), int(count), scale)


def _mean(digits: list[int], count: int, scale: int) -> float:
    total = 0
    for digit in reversed(digits):
        total = (total << LIMB_BITS) + digit
    # int / int is correctly rounded in Python, however large both are.
    return total / (count << scale) if scale >= 0 else (total << -scale) / count
