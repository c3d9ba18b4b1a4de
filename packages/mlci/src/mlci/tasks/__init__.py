"""The Invoke layer: argument parsing and printing only; the stages do the work.

``namespace`` is what the project's ``tasks.py`` and the ``mlci`` command expose.
"""

from __future__ import annotations

from invoke import Collection

from mlci.tasks import model, platform, sonar, stages

namespace = Collection.from_module(stages, name="mlci")
namespace.add_collection(Collection.from_module(sonar, name="sonar"))
namespace.add_collection(Collection.from_module(model, name="model"))
namespace.add_collection(Collection.from_module(platform, name="platform"))
