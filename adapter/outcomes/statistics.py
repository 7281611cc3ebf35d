"""Summaries of changes from baseline: n, mean, SD, 95% CI of the mean (Student's t), median and
IQR. Missing values are counted by the caller, never imputed here."""
from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["Summary", "summarise", "t_975"]


@functools.cache
def t_975(df: int) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom, computed at every df
    (scipy's inverse of the regularised incomplete beta, within 1e-12 of the closed forms): the
    MeasureReport prints six decimals, and a printed table's three were 5e-4 off at df 3.

    Examples:
        >>> round(t_975(3), 6), round(t_975(40), 6), round(t_975(120), 6)
        (3.182446, 2.021075, 1.97993)
    """
    if df < 1:
        raise ValueError(f"Student's t needs at least one degree of freedom, not {df}")
    # imported here: scipy costs 0.4 s at import, and only a report needs it, not every command
    from scipy.special import stdtrit
    return float(stdtrit(df, 0.975))


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

    Examples:
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
