"""Summaries of changes from baseline: n, mean, SD, 95% CI of the mean (Student's t), median and
IQR. Missing values are counted by the caller, never imputed here."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["Summary", "summarise", "t_975"]

# Student's t, two-sided 95% (the 0.975 quantile), for 1-30 degrees of freedom (tables); beyond,
# the Cornish-Fisher expansion around the normal's quantile (Abramowitz & Stegun 26.7.5), within
# 1e-5 of the exact quantile from 30 on: 1.96 alone would be 0.08 off at 30.
_T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
          2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
          2.052, 2.048, 2.045, 2.042]


_Z_975 = 1.959963984540054


def t_975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom.

    >>> t_975(9), round(t_975(40), 4), round(t_975(120), 4)
    (2.262, 2.0211, 1.9799)
    """
    if 1 <= df <= len(_T_975):
        return _T_975[df - 1]
    z = _Z_975
    terms = ((z ** 3 + z) / 4, (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96,
             (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384,
             (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160)
    return z + sum(term / df ** (k + 1) for k, term in enumerate(terms))


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float | None
    sd: float | None  # sample SD (n - 1)
    ci_low: float | None
    ci_high: float | None
    median: float | None
    q1: float | None
    q3: float | None


def summarise(changes: list[Decimal]) -> Summary:
    """n, mean, SD, 95% CI, median and quartiles of the changes.

    >>> s = summarise([Decimal(5), Decimal(10), Decimal(15)])
    >>> (s.n, s.mean, s.sd, round(s.ci_low, 2), s.median, s.q1, s.q3)
    (3, 10.0, 5.0, -2.42, 10.0, 7.5, 12.5)
    """
    values = [float(c) for c in changes]
    n = len(values)
    if not n:
        return Summary(0, None, None, None, None, None, None, None)
    mean = statistics.fmean(values)
    median = statistics.median(values)
    if n == 1:
        return Summary(1, mean, None, None, None, median, values[0], values[0])
    sd = statistics.stdev(values)
    half = t_975(n - 1) * sd / math.sqrt(n)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Summary(n, mean, sd, mean - half, mean + half, median, q1, q3)
