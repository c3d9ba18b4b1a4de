"""The Invoke layer: argument parsing and printing only; the stages do the work.

``namespace`` is what the project's ``tasks.py`` and the ``mlci`` command expose.
"""

from __future__ import annotations

from mlci.servers import disable_mlflow_telemetry

# Before anything imports mlflow: it starts its telemetry thread on import (see servers.py).
disable_mlflow_telemetry()

from invoke.collection import Collection  # noqa: E402

from mlci.tasks import (  # noqa: E402
    model,
    platform,
    project,
    scoring,
    server,
    serving,
    sonar,
    stages,
)

namespace = Collection.from_module(stages, name="mlci")
namespace.add_task(project.init)
namespace.add_task(server.server)
namespace.add_task(serving.serve)
namespace.add_task(scoring.score)
namespace.add_collection(Collection.from_module(sonar, name="sonar"))
namespace.add_collection(Collection.from_module(model, name="model"))
namespace.add_collection(Collection.from_module(platform, name="platform"))
