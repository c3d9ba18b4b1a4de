"""The sections of mlci's settings for what runs beside the pipeline: the platform (Jenkins,
GitBucket, SonarQube, MLflow), serving and deployment, and scoring with drift checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlci.settings.fields import option


@dataclass(frozen=True)
class PlatformSettings:
    kind: str = option(
        "compose",
        "where the platform runs: compose (one host, services/compose.yaml) or kubernetes "
        "(services/kubernetes/ and the Jenkins chart); wire restarts containers only on compose",
        choices=("compose", "kubernetes"),
    )
    compose_file: str = option("services/compose.yaml", "the Compose file of the platform")
    env_file: str = option(
        "services/.env", "the generated secrets (untracked, mode 0600) Compose reads"
    )
    project_name: str = option("mlci", "Compose project name (prefix of containers and volumes)")
    jenkins_url: str = option(
        "http://127.0.0.1:8080", "Jenkins as this machine reaches it", url=True
    )
    gitbucket_url: str = option(
        "http://127.0.0.1:8081", "GitBucket as this machine reaches it", url=True
    )
    sonarqube_url: str = option(
        "http://127.0.0.1:9000", "SonarQube as this machine reaches it", url=True
    )
    mlflow_url: str = option("http://127.0.0.1:5000", "MLflow as this machine reaches it", url=True)
    jenkins_internal_url: str = option(
        "http://jenkins:8080/",
        "Jenkins as GitBucket and SonarQube reach it inside the Compose network (webhooks)",
        url=True,
    )
    gitbucket_internal_url: str = option(
        "http://gitbucket:8080", "GitBucket as Jenkins reaches it (the job's clone URL)", url=True
    )
    organisation: str = option("mlci", "GitBucket organisation that owns the repository")
    repository: str = option("mlci", "GitBucket repository the project is pushed to")
    job: str = option("mlci", "name of the Jenkins Pipeline job")
    ref_filter: str = option(
        "^refs/(heads/main|tags/v.+)$", "pushed refs that start a build (anchored regex)"
    )
    ready_timeout: float = option(
        600.0, "seconds the services may take to become ready after `up`", minimum=1
    )
    timeout: float = option(30.0, "seconds for one request to a platform service", minimum=1)


@dataclass(frozen=True)
class ServingSettings:
    model: str = option(
        "",
        "the one of [tool.mlci.models] that serve, deploy and score use unless --model or "
        "MLCI_MODEL names another (a project with one model: that one)",
    )
    host: str = option(
        "127.0.0.1", "address `invoke serve` and the local deployment's proxy listen on"
    )
    port: int = option(
        8000,
        "port of `invoke serve` and of the local deployment's proxy",
        minimum=1,
        maximum=65535,
    )
    runtime: str = option(
        "auto",
        "auto: the model's image when a Docker engine answers and the image stage built one, "
        "else a local process; docker; process",
        choices=("auto", "docker", "process"),
    )
    proxy_url: str = option(
        "",
        "the deployment's proxy (compose: http://model-serving:8000); empty: the local one "
        "`invoke deploy` starts",
        url=True,
    )
    proxy_token: str = option(
        "", "token of the proxy's switch API (Jenkins binds it; local: generated)", secret=True
    )
    network: str = option(
        "",
        "Docker network the slot containers join (compose: mlci_mlci); empty: slots publish "
        "a port on loopback",
    )
    deploy: str = option(
        "auto",
        "auto: the pipeline's deploy stage updates a running deployment (proxy_url, or the "
        "local one) and skips when there is none; enabled: always; disabled: never",
        choices=("auto", "enabled", "disabled"),
    )
    smoke_requests: int = option(
        40, "requests of the smoke test (the input example, one after another)", minimum=5
    )
    smoke_p95_ms: float = option(
        500.0, "highest p95 latency (ms) of the smoke test before the switch", minimum=0
    )
    ready_timeout: float = option(
        180.0, "seconds a new slot may take to load its model and answer /ping", minimum=1
    )
    drain_timeout: float = option(
        30.0, "seconds the old slot's requests in flight may take after the switch", minimum=0
    )
    timeout: float = option(10.0, "seconds for one request to a slot or the proxy", minimum=1)


@dataclass(frozen=True)
class ScoreSettings:
    input: str = option("", "CSV or Parquet file that `invoke score` scores")
    drift_threshold: float = option(
        0.5,
        "drift score (share of features whose distribution moved) above which score fails",
        minimum=0,
        maximum=1,
    )
    drift_p_value: float = option(
        0.01,
        "a feature has drifted when the two-sample Kolmogorov-Smirnov test's p-value is below",
        minimum=0,
        maximum=1,
    )
    experiment: str = option(
        "", "experiment of the scoring runs; empty: <mlflow.experiment>-scoring"
    )
