"""deploy: put the champion in front of users, blue/green, after a smoke test.

The new version starts in the free slot beside the one serving now, must answer /ping, and
must pass the smoke test (its input example, ``serving.smoke_requests`` times: HTTP 200, one
prediction per row in the declared shape, p95 latency within ``serving.smoke_p95_ms``). Only
then does the proxy switch; the old slot is stopped once its requests in flight are done, so
a client sees no failed request. A version that fails its smoke test never gets traffic: its
slot is stopped, the alias goes back to the previous champion under the promotion lease (the
history says why), and the stage fails.

In the pipeline the stage updates a deployment that exists (``serving.proxy_url``, or a
local one ``invoke deploy`` started) and skips otherwise; run by hand it starts the local
one when there is none. See :mod:`mlci.deployment` for the pieces.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any, Literal, overload

from mlci import deployment as dep
from mlci import registry
from mlci.clients import mlflow as mlflow_client
from mlci.context import StageContext
from mlci.errors import ConfigError, StageFailed
from mlci.reports import write_json
from mlci.stages import PASSED, SKIPPED, StageResult

REPORT = "deploy.json"


def run(ctx: StageContext) -> StageResult:
    """The pipeline's stage: keep a running deployment on the champion."""
    return deploy(ctx, by_hand=False)


def _skip(ctx: StageContext, why: str) -> StageResult:
    ctx.log(f"deploy: skipped: {why}")
    return StageResult("deploy", SKIPPED, f"skipped: {why}")


def deploy(ctx: StageContext, version: str | None = None, by_hand: bool = True) -> StageResult:
    settings = ctx.settings
    serving = settings.serving
    if serving.deploy == "disabled":
        return _skip(ctx, "serving.deploy is disabled")
    try:
        one = settings.served()
    except ConfigError:
        if by_hand:
            raise
        return _skip(ctx, "this project has several models; name the served one in serving.model")
    mctx = ctx if one is settings else ctx.for_model(one)
    name = one.mlflow.registered_model
    start = by_hand or serving.deploy == "enabled"
    proxy = find_proxy(mctx, name, start=False)
    if proxy is None and not start:
        return _skip(ctx, "no deployment runs here to update (`invoke deploy` starts one)")
    uri = mctx.tracking_uri()
    client = mlflow_client.connect(uri, one.mlflow)
    with mlflow_client.server_errors(f"reading {name}", uri):
        target = target_version(client, name, one.promotion.alias, version)
    if target is None:
        if not by_hand:
            return _skip(ctx, f"{name} has no {one.promotion.alias} yet")
        raise StageFailed(
            f"{name} has no alias {one.promotion.alias} to deploy",
            "deploy serves the champion unless told a version",
            "promote a version first (invoke promote), or pass --version N",
        )
    # Only now, with a version to serve: a deploy that cannot start leaves nothing running.
    proxy = proxy or find_proxy(mctx, name, start=True)
    status = proxy.status()
    if status.get("version") == target and proxy.served_version() == target:
        ctx.log(f"deploy: {name} v{target} already serves at {proxy.url} ({status.get('slot')})")
        return StageResult(
            "deploy", PASSED, f"v{target} already serves", details={"version": target}
        )
    return _blue_green(mctx, client, uri, proxy, status, name, target)


def target_version(client: Any, name: str, alias: str, version: str | None) -> str | None:
    """The version to serve, as a number, resolved once: ``version``, else the alias's."""
    if version is not None:
        return str(registry.named_version(client, name, str(version)).version)
    mv = registry.alias_version(client, name, alias)
    return None if mv is None else str(mv.version)


@overload
def find_proxy(ctx: StageContext, name: str, start: Literal[True]) -> dep.Proxy: ...
@overload
def find_proxy(ctx: StageContext, name: str, start: bool) -> dep.Proxy | None: ...
def find_proxy(ctx: StageContext, name: str, start: bool) -> dep.Proxy | None:
    """The configured proxy, else the running local one; with ``start``, else a local one
    started now."""
    serving = ctx.settings.serving
    if serving.proxy_url:
        if not serving.proxy_token:
            raise ConfigError(
                "serving.proxy_url is set but serving.proxy_token is not",
                "the proxy switches traffic only for a caller with its token",
                "bind the serving-proxy credential as MLCI_SERVING_PROXY_TOKEN (Jenkins)",
            )
        return dep.Proxy(serving.proxy_url.rstrip("/"), serving.proxy_token, serving.timeout)
    running = dep.running_local_proxy(ctx.settings, name)
    if running is not None or not start:
        return running
    return dep.start_local_proxy(ctx.settings, name, ctx.log)


def _blue_green(
    ctx: StageContext,
    client: Any,
    uri: str,
    proxy: dep.Proxy,
    status: dict[str, Any],
    name: str,
    target: str,
) -> StageResult:
    settings = ctx.settings
    serving = settings.serving
    kind, docker, image = dep.runtime(settings, ctx.log)
    with mlflow_client.server_errors(f"downloading {name} v{target}", uri):
        model_dir = dep.download_model(
            uri, name, target, dep.model_folder(settings, name, target), ctx.log
        )
    old_slot, old_version = status.get("slot"), status.get("version")
    new_slot = dep.other_slot(old_slot)
    facts = dep.read_local(settings, name)
    slots = facts.setdefault("slots", {})
    if new_slot in slots:  # a leftover of an earlier deploy that did not finish
        dep.stop_slot(slots.pop(new_slot), docker)
    serving_now = (
        f"v{old_version} keeps serving from {old_slot}" if old_version else "nothing serves yet"
    )
    ctx.log(
        f"deploy: {name} v{target} into the {new_slot} slot ({kind}"
        + (f", {image}" if image else "")
        + f"); {serving_now}"
    )
    if image is not None:  # the docker runtime
        slot = dep.start_container_slot(docker, settings, image, model_dir, name, target, new_slot)
    else:
        slot = dep.start_process_slot(settings, model_dir, name, target, new_slot)
    slots[new_slot] = slot.record()
    dep.write_local(settings, name, facts)
    details: dict[str, Any] = {
        "registered_model": name,
        "version": target,
        "slot": new_slot,
        "runtime": kind,
        "image": image,
        "proxy": proxy.url,
        "previous": {"version": old_version, "slot": old_slot},
    }
    try:
        ready = dep.wait_ready(slot, serving.ready_timeout, docker)
        ctx.log(f"deploy: the {new_slot} slot answers after {ready:.1f} s; smoke test")
        smoke = dep.smoke_test(
            slot.check_url, model_dir, serving.smoke_requests, serving.smoke_p95_ms, serving.timeout
        )
    except StageFailed as exc:
        smoke = dep.Smoke(0, 0, 0, 0.0, 0.0, serving.smoke_p95_ms, [f"{exc.what}: {exc.why}"])
    details["smoke"] = asdict(smoke) | {"passed": smoke.passed}
    ctx.log(f"deploy: smoke test: {smoke.line()}")
    if not smoke.passed:
        dep.stop_slot(slots.pop(new_slot), docker)
        dep.write_local(settings, name, facts)
        why = "; ".join(smoke.problems)
        details["alias"] = _give_alias_back(ctx, client, uri, name, target, why)
        details["outcome"] = "smoke test failed: traffic stays on " + (
            f"v{old_version}" if old_version else "nothing"
        )
        write_json(ctx.model_reports / REPORT, details)
        raise StageFailed(
            f"{name} v{target} failed its smoke test; traffic stays on "
            + (f"v{old_version}" if old_version else "no version"),
            f"{why}; {details['alias']}",
            "fix the model (or raise MLCI_SERVING_SMOKE_P95_MS if the limit is wrong) and "
            "promote again; the report is reports/.../deploy.json",
        )
    switched = proxy.switch(slot, name)
    served = proxy.served_version()
    ctx.log(f"deploy: traffic switched to the {new_slot} slot; the proxy now serves v{served}")
    previous_url = (switched.get("previous") or {}).get("upstream")
    if previous_url:
        left = proxy.drain(previous_url, serving.drain_timeout)
        if left:
            ctx.log(
                f"deploy: {left} request(s) still in flight on {old_slot} after "
                f"{serving.drain_timeout:.0f} s; stopping it anyway"
            )
    if old_slot:
        record = slots.pop(old_slot, None)
        if record is None and docker is not None:
            record = {"container": dep.container_name(settings, name, old_slot)}
        if record is not None:
            dep.stop_slot(record, docker)
    dep.write_local(settings, name, facts)
    details["outcome"] = "switched"
    details["served_after"] = served
    write_json(ctx.model_reports / REPORT, details)
    before = f"v{old_version}" if old_version else "none"
    summary = f"{before} -> v{target} ({new_slot}), smoke p95 {smoke.p95_ms:.0f} ms"
    return StageResult("deploy", PASSED, summary, details=details, links={"serving": proxy.url})


def _give_alias_back(
    ctx: StageContext, client: Any, uri: str, name: str, target: str, why: str
) -> str:
    """Move the alias off a version that failed its smoke test, under the promotion lease,
    with the reason in the history; what happened, in words."""
    policy = ctx.settings.promotion
    with mlflow_client.server_errors(f"reading {name}", uri):
        mv = registry.alias_version(client, name, policy.alias)
    if mv is None or str(mv.version) != target:
        return f"the {policy.alias} is not v{target}: left as it is"
    if policy.mode != "enabled":
        return f"promotion.mode is {policy.mode}: the {policy.alias} stays on v{target}"
    try:
        with mlflow_client.server_errors(f"rolling back {name}", uri):
            old, new = registry.rollback(
                client,
                name,
                policy.alias,
                owner=registry.new_owner(),
                build_url=os.environ.get("BUILD_URL", ""),
                expect=target,
                log=ctx.log,
                lease_wait=policy.lease_wait,
                lease_ttl=policy.lease_ttl,
                reason=f"deploy of v{target} failed its smoke test: {why}",
            )
    except StageFailed as exc:
        ctx.log(f"deploy: the {policy.alias} stays on v{target}: {exc.what}")
        return f"the {policy.alias} stays on v{target} ({exc.what})"
    ctx.log(f"deploy: the {policy.alias} of {name} went back v{old} -> v{new}")
    return f"the {policy.alias} went back from v{old} to v{new}"
