"""The platform's secrets as Kubernetes Secrets, from the same env file Compose reads.

On Kubernetes (services/kubernetes/: the kustomize overlays and the Jenkins chart's values)
every component reads its secrets from a Secret by name and key; no manifest holds a value.
``invoke platform.kube-secrets`` writes those Secrets into one manifest file (mode 0600) from
the env file ``invoke platform.up`` generates, generating what is missing, so the cluster and
``invoke platform.wire`` (which reads the env file) agree on every password. The operator
applies the file with ``kubectl apply -f`` and keeps it where the env file is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlci.platform.secrets import EnvFile

FILE_HEADER = (
    "# Secrets of the mlci platform on Kubernetes, written by `invoke platform.kube-secrets`\n"
    "# from the platform's env file (mode 0600). Never commit or share this file; apply it\n"
    "# with `kubectl apply -f` and keep it with the env file.\n"
)


@dataclass(frozen=True)
class Database:
    """Where the tracking tier's PostgreSQL is (the single-node overlay runs `mlflow-db`)."""

    host: str = "mlflow-db"
    port: int = 5432
    name: str = "mlflow"
    options: str = ""


def _user(env: EnvFile, name: str, default: str) -> str:
    return env.values.get(name) or default


def secret_data(env: EnvFile, database: Database) -> dict[str, dict[str, str]]:
    """Secret name -> {key: value}, as services/kubernetes/ and the Jenkins values read them."""
    from mlci.platform.wire import MLFLOW_CI_USER, MLFLOW_SERVING_USER

    ci_user = _user(env, "MLFLOW_CI_USERNAME", MLFLOW_CI_USER)
    return {
        "mlci-mlflow-db": {
            "host": database.host,
            "port": str(database.port),
            "name": database.name,
            "user": _user(env, "MLFLOW_DB_USER", "mlflow"),
            "password": env["MLFLOW_DB_PASSWORD"],
            "options": database.options,
        },
        "mlci-mlflow": {
            "admin-username": _user(env, "MLFLOW_ADMIN_USERNAME", "admin"),
            "admin-password": env["MLFLOW_ADMIN_PASSWORD"],
            "flask-secret-key": env["MLFLOW_FLASK_SERVER_SECRET_KEY"],
        },
        "mlci-mlflow-s3": {
            "access-key": _user(env, "MLFLOW_S3_ACCESS_KEY", "mlflow"),
            "secret-key": env["MLFLOW_S3_SECRET_KEY"],
        },
        "mlci-minio": {
            "root-user": _user(env, "MINIO_ROOT_USER", "mlci-minio"),
            "root-password": env["MINIO_ROOT_PASSWORD"],
        },
        "mlci-pypi": {
            "username": _user(env, "PYPI_USERNAME", "mlci"),
            "password": env["PYPI_PASSWORD"],
        },
        "mlci-registry": {
            "username": _user(env, "REGISTRY_USERNAME", "mlci"),
            "password": env["REGISTRY_PASSWORD"],
            "http-secret": env["REGISTRY_HTTP_SECRET"],
        },
        # The serving replicas download the version they serve with a read-only login that
        # platform.wire creates when platform.kind is kubernetes.
        "mlci-serving-mlflow": {
            "username": _user(env, "MLFLOW_SERVING_USERNAME", MLFLOW_SERVING_USER),
            "password": env["MLFLOW_SERVING_PASSWORD"],
        },
        "mlci-jenkins": {
            "admin-user": "admin",
            "admin-password": env["JENKINS_ADMIN_PASSWORD"],
            "sonarqube-token": env["SONARQUBE_TOKEN"],
            "pypi-username": _user(env, "PYPI_USERNAME", "mlci"),
            "pypi-password": env["PYPI_PASSWORD"],
            "mlflow-ci-username": ci_user,
            "mlflow-ci-password": env["MLFLOW_CI_PASSWORD"],
            "registry-username": _user(env, "REGISTRY_USERNAME", "mlci"),
            "registry-password": env["REGISTRY_PASSWORD"],
            "gitbucket-jenkins-username": _user(env, "GITBUCKET_JENKINS_USERNAME", "mlci-jenkins"),
            "gitbucket-jenkins-password": env["GITBUCKET_JENKINS_PASSWORD"],
            "gitbucket-webhook-secret": env["GITBUCKET_WEBHOOK_SECRET"],
            "serving-proxy-token": env["SERVING_PROXY_TOKEN"],
        },
    }


#: The Secret the Jenkins chart's release reads; it lives in Jenkins' own namespace.
JENKINS_SECRET = "mlci-jenkins"


def secret_manifests(
    env: EnvFile, namespace: str, database: Database, jenkins_namespace: str = "jenkins"
) -> list[dict[str, Any]]:
    """One ``v1/Secret`` (type Opaque, ``stringData``) per entry of :func:`secret_data`, in
    the platform's namespace; Jenkins' own in ``jenkins_namespace`` (the chart's release)."""
    labels = {"app.kubernetes.io/part-of": "mlci", "app.kubernetes.io/managed-by": "mlci"}
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": jenkins_namespace if name == JENKINS_SECRET else namespace,
                "labels": labels,
            },
            "type": "Opaque",
            "stringData": data,
        }
        for name, data in secret_data(env, database).items()
    ]


def write_manifests(path: Path, documents: list[dict[str, Any]]) -> None:
    """Write ``documents`` as one multi-document YAML file, created 0600 and replaced whole."""
    import yaml

    from mlci.platform.secrets import _write_atomically

    text = FILE_HEADER + yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True)
    _write_atomically(path, text)
