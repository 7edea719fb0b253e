################################################################################
#
# qemu-user-static
#
################################################################################

# The release of Buildroot's qemu package, built again for user mode only and
# linked statically against the static libraries of BR2_SHARED_STATIC_LIBS.
QEMU_USER_STATIC_VERSION = 10.2.0
QEMU_USER_STATIC_SOURCE = qemu-$(QEMU_USER_STATIC_VERSION).tar.xz
QEMU_USER_STATIC_SITE = https://download.qemu.org
QEMU_USER_STATIC_LICENSE = GPL-2.0, LGPL-2.1, MIT, BSD-3-Clause, BSD-2-Clause, Others/BSD-1c
QEMU_USER_STATIC_LICENSE_FILES = COPYING COPYING.LIB
QEMU_USER_STATIC_CPE_ID_VENDOR = qemu
QEMU_USER_STATIC_CPE_ID_PRODUCT = qemu
QEMU_USER_STATIC_DEPENDENCIES = \
	host-meson \
	host-pkgconf \
	host-python3 \
	host-python-distlib \
	libglib2 \
	zlib

QEMU_USER_STATIC_TARGETS_$(BR2_PACKAGE_QEMU_USER_STATIC_TARGET_AARCH64) += aarch64
QEMU_USER_STATIC_TARGETS_$(BR2_PACKAGE_QEMU_USER_STATIC_TARGET_ARM) += arm
QEMU_USER_STATIC_TARGETS_$(BR2_PACKAGE_QEMU_USER_STATIC_TARGET_I386) += i386
QEMU_USER_STATIC_TARGETS_$(BR2_PACKAGE_QEMU_USER_STATIC_TARGET_RISCV64) += riscv64
QEMU_USER_STATIC_TARGETS_$(BR2_PACKAGE_QEMU_USER_STATIC_TARGET_X86_64) += x86_64
QEMU_USER_STATIC_TARGETS = $(strip $(QEMU_USER_STATIC_TARGETS_y))

ifeq ($(BR_BUILDING).$(QEMU_USER_STATIC_TARGETS),y.)
$(error "qemu-user-static: no target chosen")
endif

# pkg-config must hand out the static libraries' dependencies too.
define QEMU_USER_STATIC_CONFIGURE_CMDS
	unset TARGET_DIR; \
	cd $(@D); \
		LIBS='-lrt -lm' \
		$(TARGET_CONFIGURE_OPTS) \
		$(TARGET_CONFIGURE_ARGS) \
		CPP="$(TARGET_CC) -E" \
		PKG_CONFIG="$(PKG_CONFIG_HOST_BINARY) --static" \
		./configure \
			--prefix=/usr \
			--cross-prefix=$(TARGET_CROSS) \
			--static \
			--target-list="$(patsubst %,%-linux-user,$(QEMU_USER_STATIC_TARGETS))" \
			--python=$(HOST_DIR)/bin/python3 \
			--ninja=$(HOST_DIR)/bin/ninja \
			--audio-drv-list= \
			--disable-system \
			--enable-linux-user \
			--disable-bsd-user \
			--disable-tools \
			--disable-guest-agent \
			--disable-docs \
			--disable-download \
			--disable-install-blobs \
			--disable-plugins \
			--disable-capstone \
			--disable-fdt \
			--disable-seccomp \
			--disable-selinux \
			--disable-slirp \
			--disable-zstd \
			--disable-strip \
			--disable-werror \
			--disable-hexagon-idef-parser \
			--enable-trace-backends=nop
endef

define QEMU_USER_STATIC_BUILD_CMDS
	unset TARGET_DIR; \
	$(TARGET_MAKE_ENV) $(MAKE) -C $(@D)
endef

define QEMU_USER_STATIC_INSTALL_TARGET_CMDS
	$(foreach t,$(QEMU_USER_STATIC_TARGETS),\
		$(INSTALL) -D -m 0755 $(@D)/build/qemu-$(t) \
			$(TARGET_DIR)/usr/bin/qemu-$(t)-static
	)
endef

$(eval $(generic-package))
