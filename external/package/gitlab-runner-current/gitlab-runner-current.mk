################################################################################
#
# gitlab-runner-current
#
################################################################################

GITLAB_RUNNER_CURRENT_VERSION = 19.2.2
GITLAB_RUNNER_CURRENT_SITE = https://gitlab.com/gitlab-org/gitlab-runner/-/archive/v$(GITLAB_RUNNER_CURRENT_VERSION)
GITLAB_RUNNER_CURRENT_SOURCE = gitlab-runner-$(GITLAB_RUNNER_CURRENT_VERSION).tar.gz
GITLAB_RUNNER_CURRENT_LICENSE = MIT
GITLAB_RUNNER_CURRENT_LICENSE_FILES = LICENSE
GITLAB_RUNNER_CURRENT_GOMOD = gitlab.com/gitlab-org/gitlab-runner
GITLAB_RUNNER_CURRENT_BIN_NAME = gitlab-runner
GITLAB_RUNNER_CURRENT_LDFLAGS = \
	-X gitlab.com/gitlab-org/gitlab-runner/common.NAME=gitlab-runner \
	-X gitlab.com/gitlab-org/gitlab-runner/common.VERSION=$(GITLAB_RUNNER_CURRENT_VERSION) \
	-X gitlab.com/gitlab-org/gitlab-runner/common.REVISION=343288f1

# The source archive has no pinned hash yet: run 'appliance pin-hashes' after the
# first networked download (see the runner-appliance README).
BR_NO_CHECK_HASH_FOR += $(GITLAB_RUNNER_CURRENT_SOURCE)

$(eval $(golang-package))
