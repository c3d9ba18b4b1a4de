#!/usr/bin/env bash
# Writes the index's htpasswd file from PYPI_USERNAME / PYPI_PASSWORD at every start (so a
# new password in the env file takes effect on the next `up`), removes the password from the
# environment and starts pypiserver through the image's own entrypoint.
#
# The hash is bcrypt from passlib, which the pypiserver image installs and pypiserver uses to
# check logins. Python reads the password from the environment: it is never an argument.
set -euo pipefail

: "${PYPI_USERNAME:?PYPI_USERNAME is not set}" "${PYPI_PASSWORD:?PYPI_PASSWORD is not set}"

auth_dir=/data/auth
mkdir -p "$auth_dir"
python -c '
import os
from passlib.apache import HtpasswdFile
path = "/data/auth/htpasswd.new"
old = os.umask(0o077)
htpasswd = HtpasswdFile(path, new=True, default_scheme="bcrypt")
htpasswd.set_password(os.environ["PYPI_USERNAME"], os.environ["PYPI_PASSWORD"])
htpasswd.save()
os.umask(old)
os.replace(path, "/data/auth/htpasswd")
'
# pypiserver runs as the `pypiserver` user: it may read the file, nobody else may.
chown -R root:pypiserver "$auth_dir"
chmod 0750 "$auth_dir"
chmod 0640 "$auth_dir/htpasswd"
unset PYPI_PASSWORD

exec /entrypoint.sh "$@"
