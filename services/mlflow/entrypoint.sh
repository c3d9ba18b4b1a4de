#!/usr/bin/env bash
# Starts mlci's MLflow tracking server from the environment that services/compose.yaml
# passes in, or runs any other command given.
#
# Secrets never reach a command line: the database URIs, which contain the password, are
# built here and handed to `mlflow server` through MLFLOW_BACKEND_STORE_URI (which it reads
# in place of --backend-store-uri and passes on to its workers in the environment) and, for
# basic auth, through a 0600 config file. The server's environment still holds the backend
# URI; that is unavoidable with MLflow and readable only by this container's user.
#
# Environment:
#   MLFLOW_DB_HOST, MLFLOW_DB_PORT (5432), MLFLOW_DB_NAME, MLFLOW_DB_USER, MLFLOW_DB_PASSWORD
#   MLFLOW_DB_OPTIONS              libpq options for the URIs, e.g. sslmode=require (managed
#                                  databases); empty by default
#   MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS   read by MLflow: true on exactly one replica
#   MLFLOW_ARTIFACTS_BUCKET        the S3 bucket behind --artifacts-destination
#   MLFLOW_ARTIFACTS_DESTINATION   another artifact store URI instead (s3://BUCKET/ by default)
#   MLFLOW_HOST (0.0.0.0), MLFLOW_PORT (5000)   where the server listens
#   MLCI_MLFLOW_PREPARE            prepare_db.py to run (the image's copy by default)
#   MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   read by boto3
#   MLFLOW_ALLOWED_HOSTS           Host headers the server accepts
#   MLFLOW_WORKERS                 web workers (2)
#   MLFLOW_AUTH                    `basic` for the basic-auth app, `none` (default) without
#   MLFLOW_ADMIN_USERNAME, MLFLOW_ADMIN_PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY   for basic
set -euo pipefail

if [[ $# -gt 0 && $1 != server ]]; then
    exec "$@"
fi

: "${MLFLOW_DB_HOST:?}" "${MLFLOW_DB_NAME:?}" "${MLFLOW_DB_USER:?}" "${MLFLOW_DB_PASSWORD:?}"
[[ -n ${MLFLOW_ARTIFACTS_DESTINATION:-} ]] || : "${MLFLOW_ARTIFACTS_BUCKET:?}"
export MLFLOW_DB_PORT=${MLFLOW_DB_PORT:-5432}

# A SQLAlchemy URI for database $1, user and password percent-encoded. The code is on the
# command line; the password only in the environment.
database_uri() {
    python -c '
import os, sys
from urllib.parse import quote
env = os.environ
user = quote(env["MLFLOW_DB_USER"], safe="")
password = quote(env["MLFLOW_DB_PASSWORD"], safe="")
host, port = env["MLFLOW_DB_HOST"], env["MLFLOW_DB_PORT"]
options = env.get("MLFLOW_DB_OPTIONS", "").lstrip("?")
print(f"postgresql+psycopg://{user}:{password}@{host}:{port}/{sys.argv[1]}"
      + (f"?{options}" if options else ""))
' "$1"
}

MLFLOW_BACKEND_STORE_URI=$(database_uri "$MLFLOW_DB_NAME")
export MLFLOW_BACKEND_STORE_URI

args=(
    --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-s3://${MLFLOW_ARTIFACTS_BUCKET:-}/}"
    --serve-artifacts
    --host "${MLFLOW_HOST:-0.0.0.0}"
    --port "${MLFLOW_PORT:-5000}"
    --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow,mlflow:5000,localhost,localhost:5000,127.0.0.1,127.0.0.1:5000}"
    --workers "${MLFLOW_WORKERS:-2}"
)

case "${MLFLOW_AUTH:-none}" in
    basic)
        : "${MLFLOW_ADMIN_USERNAME:?}" "${MLFLOW_ADMIN_PASSWORD:?}"
        : "${MLFLOW_FLASK_SERVER_SECRET_KEY:?}"
        auth_db="${MLFLOW_DB_NAME}_auth"
        # The users and permissions live in their own database next to the tracking one;
        # prepare_db.py (below) creates it when it is missing.
        MLCI_MLFLOW_AUTH_DATABASE_URI=$(database_uri "$auth_db")
        export MLCI_MLFLOW_AUTH_DATABASE_URI
        config_dir=$(mktemp -d)
        export MLFLOW_AUTH_CONFIG_PATH="${config_dir}/basic_auth.ini"
        # configparser interpolates `%`: the percent-encoded URI doubles each one.
        AUTH_DATABASE_URI=$(database_uri "$auth_db") python -c '
import os
env = os.environ
uri = env["AUTH_DATABASE_URI"].replace("%", "%%")
user = env["MLFLOW_ADMIN_USERNAME"].replace("%", "%%")
old = os.umask(0o077)
with open(env["MLFLOW_AUTH_CONFIG_PATH"], "w", encoding="utf-8") as ini:
    ini.write(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {uri}\n"
        f"admin_username = {user}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
os.umask(old)
'
        # MLflow creates the admin user from these on first start (it has no default
        # password); later changes need its update-password API.
        export MLFLOW_AUTH_ADMIN_USERNAME="$MLFLOW_ADMIN_USERNAME"
        export MLFLOW_AUTH_ADMIN_PASSWORD="$MLFLOW_ADMIN_PASSWORD"
        args+=(--app-name basic-auth)
        ;;
    none) ;;
    *)
        echo "mlflow entrypoint: MLFLOW_AUTH must be 'basic' or 'none', not '${MLFLOW_AUTH}'" >&2
        exit 2
        ;;
esac

# Create or upgrade the schemas under a PostgreSQL advisory lock, so that replicas of this
# server that start together do not race to create the same tables (prepare_db.py says more).
python "${MLCI_MLFLOW_PREPARE:-/usr/local/lib/mlci/prepare_db.py}"
unset MLCI_MLFLOW_AUTH_DATABASE_URI

# The pieces are in the URIs now; the server needs neither them nor the admin password
# under their mlci names.
unset MLFLOW_DB_PASSWORD MLFLOW_ADMIN_PASSWORD

exec mlflow server "${args[@]}"
