"""Run the stages in order, stop at the first failure, and summarise.

The summary goes to the console as a table, and to ``summary.json`` and ``summary.html``
under the reports folder so that Jenkins can archive it.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from mlci.context import StageContext
from mlci.errors import MlciError
from mlci.reports import write_json
from mlci.stages import FAILED, NOT_RUN, PIPELINE_STAGES, StageResult, stage_function
from mlci.table import format_table


def run_stage(ctx: StageContext, name: str) -> tuple[StageResult, MlciError | None]:
    """Run one stage, timing it; an MlciError becomes a failed result (never a traceback)."""
    started = time.monotonic()
    try:
        result = stage_function(name)(ctx)
        error = None
    except MlciError as exc:
        result = StageResult(name, FAILED, exc.what)
        error = exc
    result.duration = time.monotonic() - started
    return result, error


def run_pipeline(
    ctx: StageContext,
    stages: Sequence[str] = PIPELINE_STAGES,
    runner: Callable[[StageContext, str], tuple[StageResult, MlciError | None]] = run_stage,
) -> tuple[list[StageResult], MlciError | None]:
    results: list[StageResult] = []
    error: MlciError | None = None
    for name in stages:
        if error is not None:
            results.append(StageResult(name, NOT_RUN, ""))
            continue
        ctx.log(f"==> {name}")
        result, error = runner(ctx, name)
        results.append(result)
        if error is not None:
            ctx.log(error.render())
    return results, error


def summary_lines(results: Sequence[StageResult]) -> list[str]:
    rows = [
        (r.stage, r.status, f"{r.duration:.1f} s" if r.status != NOT_RUN else "-", r.summary)
        for r in results
    ]
    lines = format_table(("stage", "status", "time", "key figure"), rows)
    links = [(f"{r.stage}: {label}", url) for r in results for label, url in r.links.items()]
    if links:
        width = max(len(label) for label, _ in links)
        lines.append("")
        lines += [f"{label:<{width}}  {url}" for label, url in links]
    return lines


def write_summary(ctx: StageContext, results: Sequence[StageResult]) -> None:
    data = {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "stages": [
            {
                "stage": r.stage,
                "status": r.status,
                "duration_s": round(r.duration, 3),
                "summary": r.summary,
                "links": r.links,
            }
            for r in results
        ],
    }
    write_json(ctx.reports / "summary.json", data)
    rows = "\n".join(
        f"<tr class='{html.escape(r.status.replace(' ', '-'))}'><td>{html.escape(r.stage)}</td>"
        f"<td>{html.escape(r.status)}</td><td>{r.duration:.1f} s</td>"
        f"<td>{html.escape(r.summary)}</td></tr>"
        for r in results
    )
    links = "\n".join(
        f"<li>{html.escape(r.stage)}: <a href='{html.escape(url)}'>{html.escape(label)}</a></li>"
        for r in results
        for label, url in r.links.items()
    )
    (ctx.reports / "summary.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>mlci pipeline summary</title>\n"
        "<style>body{font-family:sans-serif}td,th{padding:4px 12px;text-align:left}"
        ".passed{color:#176a1c}.failed{color:#b00020}.cached{color:#1a5fb4}"
        ".skipped,.not-run{color:#777}</style>\n"
        f"<h1>mlci pipeline</h1><p>finished {data['finished']}</p>\n"
        "<table><tr><th>stage</th><th>status</th><th>time</th><th>key figure</th></tr>\n"
        f"{rows}</table>\n<ul>{links}</ul>\n{_plots(ctx)}"
    )


def _plots(ctx: StageContext) -> str:
    """The model's plots the train stage left in the reports folder, shown inline."""
    images = sorted(ctx.reports.glob("*.png"))
    if not images:
        return ""
    tags = "".join(
        f"<figure><img src='{html.escape(p.name)}' width='480'>"
        f"<figcaption>{html.escape(p.stem.replace('_', ' '))}</figcaption></figure>"
        for p in images
    )
    return f"<h2>Model</h2><div style='display:flex;gap:16px'>{tags}</div>\n"
