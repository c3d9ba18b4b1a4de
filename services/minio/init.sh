#!/bin/sh
# mlci's MinIO initialisation, run by the one-shot `minio-init` service on every
# `docker-compose up` (idempotent): the artifact bucket MLflow proxies, a policy that allows
# only that bucket, and the MinIO user MLflow signs in with (never the root user).
#
# The quay.io/minio/mc image is UBI-micro: sh and coreutils, no grep; hence `case` below.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${MLFLOW_ARTIFACTS_BUCKET:?}" "${MLFLOW_S3_ACCESS_KEY:?}" "${MLFLOW_S3_SECRET_KEY:?}"

# mc reads an alias from MC_HOST_<alias>, which keeps the root password off mc's command
# line. It is a URL: the generated credentials must be URL-safe (invoke platform.up makes
# them so).
MC_HOST_mlci="http://${MINIO_ROOT_USER}:${MINIO_ROOT_PASSWORD}@minio:9000"
export MC_HOST_mlci

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

# `user add` creates the user or resets its secret to the one in the env file. mc takes the
# secret only as an argument here; it is visible solely inside this short-lived container.
mc admin user add mlci "$MLFLOW_S3_ACCESS_KEY" "$MLFLOW_S3_SECRET_KEY"

# Attaching an already attached policy is an error in mc: attach only when missing.
info=$(mc admin user info mlci "$MLFLOW_S3_ACCESS_KEY")
case "$info" in
    *mlflow-artifacts*) ;;
    *) mc admin policy attach mlci mlflow-artifacts --user "$MLFLOW_S3_ACCESS_KEY" ;;
esac
echo "minio-init: bucket ${bucket} and user ${MLFLOW_S3_ACCESS_KEY} ready"
