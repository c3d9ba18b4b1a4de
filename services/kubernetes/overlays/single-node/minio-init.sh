#!/bin/sh
# Prepares MinIO for MLflow: the Job minio-init of this overlay (minio.yaml) and the one-shot
# minio-init service of services/compose.yaml both run this file. Every step may run again
# without harm, so either can run it at any time:
#
#   1. wait until MinIO serves requests;
#   2. make the artifact bucket unless it exists;
#   3. write the policy that allows that bucket and nothing else;
#   4. create MLflow's user, or set its secret key to the current one from the Secret;
#   5. attach the policy to that user unless it already is.
#
# The mc image is a minimal one (sh and coreutils, no grep), hence the `case` tests.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${MLFLOW_ARTIFACTS_BUCKET:?}" "${MLFLOW_S3_ACCESS_KEY:?}" "${MLFLOW_S3_SECRET_KEY:?}"

# mc reads the alias `mlci` from this variable, so the root password never appears among
# mc's arguments. It is a URL: the credentials must be URL-safe (mlci generates them so).
MC_HOST_mlci="http://${MINIO_ROOT_USER}:${MINIO_ROOT_PASSWORD}@minio:9000"
export MC_HOST_mlci

tries=0
until mc ready mlci >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
        echo "minio-init: MinIO at minio:9000 did not become ready in 5 minutes" >&2
        exit 1
    fi
    sleep 5
done

bucket=$MLFLOW_ARTIFACTS_BUCKET
mc mb --ignore-existing "mlci/${bucket}"

policy=/tmp/mlflow-artifacts-policy.json
cat >"$policy" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::${bucket}"]
    },
    {
      "Effect": "Allow",
      "Action": [
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts"
      ],
      "Resource": ["arn:aws:s3:::${bucket}/*"]
    }
  ]
}
JSON
mc admin policy create mlci mlflow-artifacts "$policy"

# With the access key as its only argument, `mc admin user add` reads the secret key from
# stdin (one line), so it stays off the command line.
printf '%s\n' "$MLFLOW_S3_SECRET_KEY" | mc admin user add mlci "$MLFLOW_S3_ACCESS_KEY"

# mc refuses to attach a policy twice: attach it only when the user lacks it.
info=$(mc admin user info mlci "$MLFLOW_S3_ACCESS_KEY")
case "$info" in
    *mlflow-artifacts*) ;;
    *) mc admin policy attach mlci mlflow-artifacts --user "$MLFLOW_S3_ACCESS_KEY" ;;
esac
echo "minio-init: bucket ${bucket} and user ${MLFLOW_S3_ACCESS_KEY} ready"
