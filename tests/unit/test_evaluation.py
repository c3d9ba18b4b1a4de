"""What promotion checks with the models: signature changes; tools named by their extra."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mlci.errors import ToolMissing
from mlci.evaluation import signature_change
from mlci.tools import require_module


def _model(inputs: dict[str, str], output: str = "double"):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    signature = ModelSignature(
        inputs=Schema([ColSpec(kind, name) for name, kind in inputs.items()]),
        outputs=Schema([ColSpec(output)]),
    )
    return SimpleNamespace(metadata=SimpleNamespace(signature=signature))


def test_an_unchanged_signature_shows_nothing_and_a_change_each_column():
    champion = _model({"age": "double", "bmi": "double"})
    assert signature_change(_model({"age": "double", "bmi": "double"}), champion) == []
    candidate = _model({"age": "long", "bp": "double"}, output="long")
    assert signature_change(candidate, champion) == [
        "+ inputs:bp double",
        "- inputs:bmi double",
        "~ inputs:age double -> long",
        "~ outputs:0 double -> long",
    ]


def test_a_missing_stage_tool_names_mlcis_extra():
    with pytest.raises(ToolMissing) as info:
        require_module("ruff_is_not_here_xyz")
    assert "pip install ruff_is_not_here_xyz" in info.value.fix
    from mlci import tools

    tools.EXTRAS["ruff_is_not_here_xyz"] = "lint"
    try:
        with pytest.raises(ToolMissing) as info:
            require_module("ruff_is_not_here_xyz")
    finally:
        del tools.EXTRAS["ruff_is_not_here_xyz"]
    assert "it comes with mlci's 'lint' extra" in info.value.why
    assert info.value.fix.endswith("-m pip install 'mlci[lint]'")
