"""The wiring's MLflow steps (when its basic auth is on): the CI user with MANAGE on every
model's experiment and registered model, and on Kubernetes the serving replicas' login."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mlci.platform.wire.core import UNCHANGED, WiringBase

MLFLOW_CI_USER = "mlci-ci"
MLFLOW_SERVING_USER = "mlci-serving"

SERVICE = "MLflow"


class MlflowSteps(WiringBase):
    def mlflow(self) -> None:
        from mlci.platform import mlflow_accounts as accounts

        url, timeout = self.platform.mlflow_url, self.platform.timeout
        with self.step(SERVICE, "authentication"):
            enabled = accounts.auth_enabled(url, timeout)
        if not enabled:
            self.record(
                SERVICE,
                "users",
                UNCHANGED,
                "MLflow asks for no login (MLFLOW_AUTH=none): anyone who reaches it can move "
                "the champion; set MLFLOW_AUTH=basic in the env file",
            )
            return
        values = self.env.values
        admin = accounts.Account(
            values.get("MLFLOW_ADMIN_USERNAME") or "admin", self.env["MLFLOW_ADMIN_PASSWORD"]
        )
        ci = accounts.Account(
            values.get("MLFLOW_CI_USERNAME") or MLFLOW_CI_USER, self.env["MLFLOW_CI_PASSWORD"]
        )
        with self.step(SERVICE, "admin"):
            if not accounts.credentials_work(url, admin, timeout):
                from mlci.errors import TrackingServerError

                raise TrackingServerError(
                    f"MLflow: {admin.username} does not log in with MLFLOW_ADMIN_PASSWORD",
                    "the server keeps the admin password it first started with in its "
                    "user database",
                    "put that password into the env file, or reset the mlflow-db volume",
                )
        with self.step(SERVICE, "CI user"), self._mlflow_errors(url):
            outcome, detail = accounts.ensure_user(url, admin, ci, timeout)
        self.record(SERVICE, "CI user", outcome, detail)
        if self.platform.kind == "kubernetes":
            # The model-serving replicas download their version with a login of their own,
            # which gets no permission beyond the server's default (READ).
            serving = accounts.Account(
                values.get("MLFLOW_SERVING_USERNAME") or MLFLOW_SERVING_USER,
                self.env["MLFLOW_SERVING_PASSWORD"],
            )
            with self.step(SERVICE, "serving user"), self._mlflow_errors(url):
                outcome, detail = accounts.ensure_user(url, admin, serving, timeout)
            self.record(SERVICE, "serving user", outcome, detail + " (read only)")
        # Every model's experiment and registered model ([tool.mlci.models], or the one).
        for model in self.settings.each_model():
            with self.step(SERVICE, "CI permissions"), self._mlflow_errors(url):
                done = accounts.ensure_manage(
                    url,
                    admin,
                    ci.username,
                    model.mlflow.experiment,
                    model.mlflow.registered_model,
                    timeout,
                )
            for outcome, detail in done:
                self.record(SERVICE, "CI permissions", outcome, detail)

    @contextlib.contextmanager
    def _mlflow_errors(self, url: str) -> Iterator[None]:
        from mlflow.exceptions import MlflowException

        from mlci.platform.mlflow_accounts import client_error

        try:
            yield
        except MlflowException as exc:
            raise client_error(exc, url) from None
