"""`init`: set a repository up for mlci."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from mlci.tasks._signals import stops_cleanly


@task(
    help={
        "module": "import name of the model package (default: found from pyproject.toml)",
        "primary_metric": "the metric a candidate must beat the champion on (default f1_macro)",
        "lower_is_better": "the primary metric is better lower (a loss, rmse)",
        "dry_run": "print what would be written and write nothing",
    }
)
@stops_cleanly
def init(
    c: Context,
    module: str = "",
    primary_metric: str = "f1_macro",
    lower_is_better: bool = False,
    dry_run: bool = False,
) -> None:
    """Write editable copies of mlci's defaults here: [tool.mlci], Jenkinsfile, bootstrap, ..."""
    from mlci.init import apply, plan
    from mlci.settings import find_project_root

    # Here, or the project this folder belongs to (MLCI_PROJECT_ROOT, or the nearest
    # folder upwards with [tool.mlci], which init then refuses to overwrite).
    root = find_project_root()
    planned = plan(root, module, primary_metric, lower_is_better)
    for item in planned:
        lines = item.content.strip("\n").count("\n") + 1
        print(f"{'would ' if dry_run else ''}{item.action} {item.path} ({lines} lines)")
    if dry_run:
        print("\n[tool.mlci] that would be added to pyproject.toml:")
        print(planned[0].content.strip("\n"))
        return
    apply(root, planned)
    print(
        "\nnext: install the tools (bash .ci/bootstrap, or pip install 'mlci[all]' and your "
        "package), commit, then run `mlci pipeline`"
    )
