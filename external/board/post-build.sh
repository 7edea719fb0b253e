#!/bin/sh
# Buildroot post-build script for runner-appliance: things the overlay cannot express.
set -eu

# Mount point of the data disk on the read-only root.
mkdir -p "${TARGET_DIR}/data"

# An empty machine-id lets systemd derive one at boot (from the VM's UUID) on a read-only root.
if [ ! -e "${TARGET_DIR}/etc/machine-id" ]; then
	: >"${TARGET_DIR}/etc/machine-id"
fi

# root's Docker CLI configuration lives in /run (tmpfiles.d makes the folder): the root is
# read-only, and `docker buildx` writes its state under ~/.docker.
mkdir -p "${TARGET_DIR}/root"
ln -sfn /run/root-docker "${TARGET_DIR}/root/.docker"
