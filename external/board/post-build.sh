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

# Nothing on the appliance needs the network to be "online" before it starts: Docker comes up
# without it, the runner retries GitLab by itself, resolved and sshd follow the link. Docker's
# own unit pulls in network-online.target, and systemd-networkd-wait-online (enabled with
# systemd-networkd through its Also=) then holds Docker back until every link is configured,
# and fails the boot's state after 2 min when one is not (a failed unit: health says unhealthy).
# Masked, network-online.target is reached as soon as the network is up. A mask, not a preset
# line: `systemctl preset-all` would enable it again through systemd-networkd's Also=.
mkdir -p "${TARGET_DIR}/etc/systemd/system"
ln -sfn /dev/null "${TARGET_DIR}/etc/systemd/system/systemd-networkd-wait-online.service"
