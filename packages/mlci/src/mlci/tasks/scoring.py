"""`invoke score`: batch predictions with a drift report (the nightly scoring job's task)."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from mlci.tasks._signals import stops_cleanly
from mlci.tasks.stages import _stage_context


@task(
    help={
        "input": "CSV or Parquet file to score (overrides score.input)",
        "version": "score with this registered version (default: the champion, resolved once)",
        "model": "which of [tool.mlci.models] (default: serving.model, or the only one)",
    }
)
@stops_cleanly
def score(
    c: Context, input: str | None = None, version: str | None = None, model: str | None = None
) -> None:
    """Score a CSV or Parquet batch with the champion; write predictions and a drift report."""
    from mlci.errors import ConfigError
    from mlci.stages import score as scoring

    # A path on the command line is the user's, relative to where they are; score.input in
    # pyproject.toml is relative to the project root (resolved by the stage).
    given = str(Path(input).absolute()) if input else None
    with _stage_context({"score.input": given}, model) as ctx:
        chosen = ctx.settings.score.input
        if not chosen:
            raise ConfigError(
                "no batch to score",
                "score reads the CSV or Parquet file named by --input or score.input",
                "pass --input FILE, or set MLCI_SCORE_INPUT (or score.input under "
                "[tool.mlci.score] in pyproject.toml)",
            )
        result = scoring.run(ctx, chosen, version=version)
        print(f"score: {result.status}: {result.summary}")
        for label, path in result.details.get("reports", {}).items():
            print(f"  {label}: {path}")
        for label, url in result.links.items():
            print(f"  {label}: {url}")
