################################################################################
#
# docuum
#
################################################################################

DOCUUM_VERSION = 0.25.1
DOCUUM_SITE = $(call github,stepchowfun,docuum,v$(DOCUUM_VERSION))
DOCUUM_LICENSE = MIT
DOCUUM_LICENSE_FILES = LICENSE.md

# The source archive has no pinned hash yet: run 'appliance pin-hashes' after the
# first networked download (see the runner-appliance README).
BR_NO_CHECK_HASH_FOR += $(DOCUUM_SOURCE)

$(eval $(cargo-package))
