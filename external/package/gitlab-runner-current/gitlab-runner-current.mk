################################################################################
#
# gitlab-runner-current
#
################################################################################

GITLAB_RUNNER_CURRENT_VERSION = 19.2.2
GITLAB_RUNNER_CURRENT_SITE = https://gitlab.com/gitlab-org/gitlab-runner/-/archive/v$(GITLAB_RUNNER_CURRENT_VERSION)
GITLAB_RUNNER_CURRENT_LICENSE = MIT
GITLAB_RUNNER_CURRENT_LICENSE_FILES = LICENSE

GITLAB_RUNNER_CURRENT_GOMOD = gitlab.com/gitlab-org/gitlab-runner
GITLAB_RUNNER_CURRENT_BIN_NAME = gitlab-runner
GITLAB_RUNNER_CURRENT_LDFLAGS = \
	-X $(GITLAB_RUNNER_CURRENT_GOMOD)/common.NAME=gitlab-runner \
	-X $(GITLAB_RUNNER_CURRENT_GOMOD)/common.VERSION=$(GITLAB_RUNNER_CURRENT_VERSION) \
	-X $(GITLAB_RUNNER_CURRENT_GOMOD)/common.REVISION=343288f1

# The source archive has no pinned hash yet: run 'appliance pin-hashes' after the
# first networked download (see the runner-appliance README).
BR_NO_CHECK_HASH_FOR += $(GITLAB_RUNNER_CURRENT_SOURCE)

$(eval $(golang-package))
