"""Summaries of changes from baseline: n, mean, SD, 95% CI of the mean (Student's t), median and
IQR. Missing values are counted by the caller, never imputed here."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["Summary", "summarise", "t_975"]

# Student's t, two-sided 95% (the 0.975 quantile), for 1-30 degrees of freedom; beyond, the
# normal's 1.96 is within 0.05 of it.
_T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
          2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
          2.052, 2.048, 2.045, 2.042]


def t_975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom.

    >>> t_975(9), t_975(1000)
    (2.262, 1.96)
    """
    return _T_975[df - 1] if 1 <= df <= len(_T_975) else 1.96


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
