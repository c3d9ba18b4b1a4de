"""The pieces of serving and blue/green deployment: model files, slots, smoke test, proxy.

A *slot* (``blue`` or ``green``) serves one registered version with :mod:`mlci.serving_app`,
as a local process or as a container of the model's own image. A deployment is one proxy
(``services/serving/proxy.py``) in front of at most two slots: ``invoke deploy`` starts the
new version in the free slot, smoke-tests it there, switches the proxy, waits until the old
slot has no request in flight, and stops it. The proxy is either the platform's
(``serving.proxy_url``: the Compose service ``model-serving``) or a local one that
``invoke deploy`` starts on ``serving.host:serving.port`` and that outlives it; the local
deployment's facts (proxy, slots) live in ``<state>/serving/<model>/``.

Slots see their model as files: the version is downloaded once into the state folder, so a
slot needs neither the tracking server nor its credentials.

The modules, each importing only those above it: :mod:`.client` (HTTP calls),
:mod:`.model_files`, :mod:`.slot` (the record), :mod:`.processes` and :mod:`.containers`
(the two runtimes), :mod:`.lifecycle` (choosing a runtime, waiting, stopping),
:mod:`.smoke`, :mod:`.proxy`, :mod:`.local` (the local deployment) and :mod:`.serve`
(`invoke serve`). Every name is importable from ``mlci.deployment`` itself.
"""

from __future__ import annotations

from mlci.deployment.client import answers, http
from mlci.deployment.containers import SLOT_PORT, container_name, start_container_slot
from mlci.deployment.lifecycle import runtime, slot_failure, stop_slot, wait_ready
from mlci.deployment.local import (
    _token,
    local_folder,
    proxy_script,
    read_local,
    running_local_proxy,
    start_local_proxy,
    stop_local,
    write_local,
)
from mlci.deployment.model_files import (
    download_model,
    download_model_uri,
    input_example,
    model_folder,
)
from mlci.deployment.processes import start_process_slot
from mlci.deployment.proxy import TOKEN_ENV, VERSION_HEADER, Proxy
from mlci.deployment.serve import serve_forever
from mlci.deployment.slot import BLUE, GREEN, Slot, other_slot, slot_command
from mlci.deployment.smoke import Smoke, _percentile, _shape_problem, smoke_test
from mlci.image_run import remove_container

__all__ = [
    "BLUE",
    "GREEN",
    "SLOT_PORT",
    "TOKEN_ENV",
    "VERSION_HEADER",
    "Proxy",
    "Slot",
    "Smoke",
    "_percentile",
    "_shape_problem",
    "_token",
    "answers",
    "container_name",
    "download_model",
    "download_model_uri",
    "http",
    "input_example",
    "local_folder",
    "model_folder",
    "other_slot",
    "proxy_script",
    "read_local",
    "remove_container",
    "running_local_proxy",
    "runtime",
    "serve_forever",
    "slot_command",
    "slot_failure",
    "smoke_test",
    "start_container_slot",
    "start_local_proxy",
    "start_process_slot",
    "stop_local",
    "stop_slot",
    "wait_ready",
    "write_local",
]
