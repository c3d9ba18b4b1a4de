"""Data drift: how far a batch of inputs has moved from the data the model was trained on.

Per feature, the statistics of both samples (count, mean, standard deviation, minimum,
maximum, share of missing values) and, for numeric features, a two-sample
Kolmogorov-Smirnov test of the batch against the reference. A feature has drifted when
the test's p-value is below ``p_value`` (``score.drift_p_value``); the drift score is the
share of the tested features that drifted, from 0 (none) to 1 (all).

The reference is what train logged (``reference/train_inputs.parquet``); `invoke score`
compares each batch it scores with it (:mod:`mlci.stages.score`). No network, no MLflow:
two data frames in, a :class:`DriftReport` out, rendered as JSON (:func:`report_dict`) and
as a PNG of the histograms (:func:`draw_png`).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

from mlci.errors import ConfigError

#: The most features the PNG draws (the drifted ones first); the JSON has them all.
MAX_PLOTS = 36
_DPI = 100


@dataclass(frozen=True)
class Stats:
    """One sample of one feature. Numbers are None where the sample has no values."""

    count: int
    missing_share: float
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    reference: Stats
    batch: Stats
    #: Whether the feature is numeric (only those are tested, and counted in the score).
    tested: bool
    drifted: bool
    #: The Kolmogorov-Smirnov statistic and p-value; None when untested or untestable.
    statistic: float | None = None
    p_value: float | None = None
    #: Why the test could not run or was decided without it; empty otherwise.
    note: str = ""


@dataclass(frozen=True)
class DriftReport:
    features: tuple[FeatureDrift, ...]
    #: The p-value below which a feature counts as drifted.
    p_value: float
    reference_rows: int
    batch_rows: int

    @property
    def tested(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.tested]

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    @property
    def score(self) -> float:
        """The share of the tested features that drifted (0 when none could be tested)."""
        tested = self.tested
        return sum(f.drifted for f in tested) / len(tested) if tested else 0.0


def check_columns(
    reference_columns: list[str], batch_columns: list[str], source: str, fix: str = ""
) -> None:
    """The batch has exactly the reference's columns; one error naming the missing and the
    extra ones otherwise (``fix`` adds where the batch comes from)."""
    missing = [c for c in reference_columns if c not in batch_columns]
    extra = [c for c in batch_columns if c not in reference_columns]
    if not (missing or extra):
        return
    parts = []
    if missing:
        parts.append(f"missing {', '.join(map(str, missing))}")
    if extra:
        parts.append(f"unexpected {', '.join(map(str, extra))}")
    raise ConfigError(
        f"{source} does not have the model's input columns: {'; '.join(parts)}",
        f"the model was trained on {len(reference_columns)} columns: "
        + ", ".join(map(str, reference_columns)),
        "give the batch exactly those columns (names as the model's signature has them)"
        + (f"; {fix}" if fix else ""),
    )


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _stats(column: Any, numeric: bool) -> tuple[Stats, Any]:
    """The statistics of one column and its non-missing values (as floats when numeric)."""
    count = len(column)
    values = column.dropna()
    missing = (count - len(values)) / count if count else 0.0
    if not numeric or len(values) == 0:
        return Stats(count=count, missing_share=missing), values
    values = values.astype(float)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return Stats(
        count=count,
        missing_share=missing,
        mean=_number(values.mean()),
        std=_number(std),
        min=_number(values.min()),
        max=_number(values.max()),
    ), values


def compare(reference: Any, batch: Any, p_value: float, source: str = "the batch") -> DriftReport:
    """The drift of ``batch`` from ``reference`` (pandas data frames with the same columns)."""
    import pandas as pd
    from scipy.stats import ks_2samp

    columns = [str(c) for c in reference.columns]
    check_columns(columns, [str(c) for c in batch.columns], source)
    features = []
    for name in columns:
        ref_col, new_col = reference[name], batch[name]
        numeric = pd.api.types.is_numeric_dtype(ref_col) and pd.api.types.is_numeric_dtype(new_col)
        ref_stats, ref_values = _stats(ref_col, numeric)
        new_stats, new_values = _stats(new_col, numeric)
        if not numeric:
            note = "not numeric: not tested"
            features.append(FeatureDrift(name, ref_stats, new_stats, False, False, note=note))
            continue
        if len(ref_values) == 0 or len(new_values) == 0:
            # Nothing to compare: a batch without any value where training had them has
            # moved as far as data can; a reference without values says nothing.
            drifted = len(new_values) == 0 and len(ref_values) > 0
            note = "no values in the batch" if len(new_values) == 0 else "no values in reference"
            counted = drifted  # an empty reference gives nothing to test against
            features.append(FeatureDrift(name, ref_stats, new_stats, counted, drifted, note=note))
            continue
        result = ks_2samp(ref_values.to_numpy(), new_values.to_numpy())
        statistic, p = float(result.statistic), float(result.pvalue)
        features.append(FeatureDrift(name, ref_stats, new_stats, True, p < p_value, statistic, p))
    return DriftReport(tuple(features), p_value, len(reference), len(batch))


def report_dict(report: DriftReport) -> dict[str, Any]:
    """The report as plain JSON values (no NaN: a missing number is null)."""

    def stats(s: Stats) -> dict[str, Any]:
        return {
            "count": s.count,
            "missing_share": round(s.missing_share, 6),
            "mean": s.mean,
            "std": s.std,
            "min": s.min,
            "max": s.max,
        }

    return {
        "drift_score": report.score,
        "p_value_threshold": report.p_value,
        "reference_rows": report.reference_rows,
        "batch_rows": report.batch_rows,
        "tested_features": len(report.tested),
        "drifted_features": report.drifted,
        "features": {
            f.name: {
                "tested": f.tested,
                "drifted": f.drifted,
                "ks_statistic": f.statistic,
                "p_value": f.p_value,
                "note": f.note,
                "reference": stats(f.reference),
                "batch": stats(f.batch),
            }
            for f in report.features
        },
    }


def draw_png(report: DriftReport, reference: Any, batch: Any, title: str) -> bytes:
    """Reference and batch histograms, one panel per feature; drifted panels in red.

    Drawn on a bare matplotlib ``Figure`` with the Agg canvas (no pyplot, no display).
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [f for f in report.features if f.drifted] + [
        f for f in report.features if not f.drifted
    ]
    left_out = max(0, len(shown) - MAX_PLOTS)
    shown = shown[:MAX_PLOTS]
    columns = min(4, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    fig = Figure(figsize=(3.4 * columns, 2.6 * rows + 0.9))
    FigureCanvasAgg(fig)
    heading = (
        f"{title}\ndrift score {report.score:.2f}: {len(report.drifted)} of "
        f"{len(report.tested)} features drifted (KS p < {report.p_value:g})"
    )
    if left_out:
        heading += f"; {left_out} more features in the JSON report"
    fig.suptitle(heading, fontsize=10)
    legend = True
    for index, feature in enumerate(shown, 1):
        ax = fig.add_subplot(rows, columns, index)
        ref = reference[feature.name].dropna()
        new = batch[feature.name].dropna()
        colour = "tab:red" if feature.drifted else "black"
        if feature.tested and len(ref) and len(new):
            both = np.concatenate([ref.to_numpy(dtype=float), new.to_numpy(dtype=float)])
            bins: list[float] = np.histogram_bin_edges(both, bins=20).tolist()
            ax.hist(ref, bins=bins, density=True, alpha=0.5, label="reference")
            ax.hist(new, bins=bins, density=True, alpha=0.5, label="batch")
            if legend:
                ax.legend(fontsize=7)
                legend = False
        else:
            ax.text(
                0.5,
                0.5,
                feature.note or "not drawn",
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=8,
            )
        detail = f"p={feature.p_value:.2g}" if feature.p_value is not None else feature.note
        ax.set_title(
            f"{'DRIFTED ' if feature.drifted else ''}{feature.name}\n{detail}",
            fontsize=8,
            color=colour,
        )
        ax.tick_params(labelsize=7)
        if feature.drifted:
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:red")
                spine.set_linewidth(2)
    fig.subplots_adjust(
        left=0.06,
        right=0.98,
        bottom=0.06,
        top=1 - 0.9 / (2.6 * rows + 0.9),
        hspace=0.8,
        wspace=0.3,
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()
