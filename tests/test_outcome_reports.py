"""The trial's results as FHIR: Measures from the protocol spec, MeasureReports from $evaluate-measure."""
from __future__ import annotations

import pytest

from adapter.outcomes.statistics import t_975


@pytest.mark.parametrize("df, quantile", [(1, 12.706), (5, 2.571), (30, 2.042), (31, 2.039513), (40, 2.021075),
                                          (60, 2.000298), (120, 1.979930), (1000, 1.962339)])
def test_the_95_percent_interval_uses_students_t_at_every_size(df, quantile):
    # qt(0.975, df) in R; past 30 the normal's 1.96 would make a 95% interval too narrow.
    assert t_975(df) == pytest.approx(quantile, abs=2e-5)
