# OS integration of oseprovd and osectl: install the bus, polkit, systemd, man and
# completion files into their FHS places, and check the units.
#
#   make install [DESTDIR=/tmp/root] [PREFIX=/usr] [SYSCONFDIR=/etc]
#                [INSTALL_PYTHON=1] [PYTHON=python3]
#   make check          check-units + check-man
#   make uninstall
#
# The Python packages themselves are pip's job (INSTALL_PYTHON=1); everything else is
# plain files. Installed files get explicit modes whatever the caller's umask:
# dbus-daemon and polkitd read them as unprivileged users.

PREFIX ?= /usr
SYSCONFDIR ?= /etc
DESTDIR ?=
PYTHON ?= python3
# The interpreter that runs osectl (with click) to print its completion scripts; the
# one pip installs for may be another (Debian's python3 without the dependencies yet).
CLI_PYTHON ?= $(PYTHON)
INSTALL_PYTHON ?= 0
SYSTEMD_ANALYZE ?= systemd-analyze
# Unit directory of the host, copied into the verify root so that systemd-analyze
# finds the units ours depend on (dbus.socket, multi-user.target, ...).
HOST_UNIT_DIR ?= /usr/lib/systemd/system

BINDIR = $(PREFIX)/bin
DATADIR = $(PREFIX)/share
DBUS_SYSTEM_CONF_DIR = $(DATADIR)/dbus-1/system.d
DBUS_SYSTEM_SERVICES_DIR = $(DATADIR)/dbus-1/system-services
DBUS_INTERFACES_DIR = $(DATADIR)/dbus-1/interfaces
POLKIT_ACTIONS_DIR = $(DATADIR)/polkit-1/actions
SYSTEMD_UNIT_DIR = $(PREFIX)/lib/systemd/system
TMPFILES_DIR = $(PREFIX)/lib/tmpfiles.d
MAN1_DIR = $(DATADIR)/man/man1
MAN8_DIR = $(DATADIR)/man/man8
BASH_COMPLETION_DIR = $(DATADIR)/bash-completion/completions
ZSH_COMPLETION_DIR = $(DATADIR)/zsh/vendor-completions
FISH_COMPLETION_DIR = $(DATADIR)/fish/vendor_completions.d
CONF_DIR = $(SYSCONFDIR)/ose

UNITS = $(wildcard systemd/*.service)
INTERFACES = $(wildcard dbus/interfaces/org.ose.*.xml)
MANPAGES = man/oseprovd.8 man/osectl.1
BUILD = build
VERIFY_ROOT = $(abspath $(BUILD))/verify-root

MKDIR = umask 022 && install -d -m 0755
INSTALL_DATA = install -m 0644

# Debian's python maps --prefix=/usr to /usr/local unless asked for its system layout;
# the variable is ignored elsewhere. ExecStart= must find the script in $(BINDIR).
PIP_ENV = $(if $(filter /usr,$(PREFIX)),DEB_PYTHON_INSTALL_LAYOUT=deb_system)

.PHONY: all install install-dbus install-polkit install-systemd install-man \
	install-config install-completions install-python completions uninstall \
	check check-units check-man clean

all: completions

install: install-dbus install-polkit install-systemd install-man install-config \
	install-completions install-python

install-dbus:
	$(MKDIR) $(DESTDIR)$(DBUS_SYSTEM_CONF_DIR) $(DESTDIR)$(DBUS_SYSTEM_SERVICES_DIR) \
		$(DESTDIR)$(DBUS_INTERFACES_DIR)
	$(INSTALL_DATA) dbus/org.ose.Provisioning1.conf $(DESTDIR)$(DBUS_SYSTEM_CONF_DIR)/
	$(INSTALL_DATA) dbus/org.ose.Provisioning1.service $(DESTDIR)$(DBUS_SYSTEM_SERVICES_DIR)/
	$(if $(INTERFACES),$(INSTALL_DATA) $(INTERFACES) $(DESTDIR)$(DBUS_INTERFACES_DIR)/)

install-polkit:
	$(MKDIR) $(DESTDIR)$(POLKIT_ACTIONS_DIR)
	$(INSTALL_DATA) polkit/org.ose.provisioning.policy $(DESTDIR)$(POLKIT_ACTIONS_DIR)/

# The units name /usr/bin/oseprovd; another PREFIX rewrites that path.
install-systemd:
	$(MKDIR) $(DESTDIR)$(SYSTEMD_UNIT_DIR) $(DESTDIR)$(TMPFILES_DIR)
	for unit in $(UNITS); do \
		sed 's|/usr/bin/oseprovd|$(BINDIR)/oseprovd|' $$unit \
			> $(DESTDIR)$(SYSTEMD_UNIT_DIR)/$${unit##*/} && \
		chmod 0644 $(DESTDIR)$(SYSTEMD_UNIT_DIR)/$${unit##*/} || exit 1; \
	done
	$(INSTALL_DATA) systemd/tmpfiles.d/oseprovd.conf $(DESTDIR)$(TMPFILES_DIR)/

install-man:
	$(MKDIR) $(DESTDIR)$(MAN1_DIR) $(DESTDIR)$(MAN8_DIR)
	$(INSTALL_DATA) man/osectl.1 $(DESTDIR)$(MAN1_DIR)/
	$(INSTALL_DATA) man/oseprovd.8 $(DESTDIR)$(MAN8_DIR)/

# A configuration file the administrator may have edited is never overwritten.
install-config:
	$(MKDIR) $(DESTDIR)$(CONF_DIR)
	test -e $(DESTDIR)$(CONF_DIR)/oseprovd.toml || \
		$(INSTALL_DATA) etc/oseprovd.toml $(DESTDIR)$(CONF_DIR)/oseprovd.toml

# Completion scripts come from click (osectl is a click CLI). Until osectl.main has
# its CLI, it prints nothing and no script is made; anything else that is not a
# completion script is an error.
completions:
	mkdir -p $(BUILD)/completions
	for pair in bash:osectl zsh:_osectl fish:osectl.fish; do \
		shell=$${pair%%:*}; file=$(BUILD)/completions/$${pair#*:}; \
		if env _OSECTL_COMPLETE=$${shell}_source $(CLI_PYTHON) -m osectl.main \
			</dev/null >$$file.tmp; then ok=yes; else ok=no; fi; \
		if [ $$ok = yes ] && [ ! -s $$file.tmp ]; then \
			rm -f $$file.tmp $$file; \
			echo "completions: osectl has no CLI yet, no $$shell completion"; \
		elif [ $$ok = yes ] && grep -q _OSECTL_COMPLETE $$file.tmp; then \
			mv $$file.tmp $$file; \
		else \
			rm -f $$file.tmp; \
			echo "completions: 'python -m osectl.main' did not print a $$shell" \
				"completion script (is prog_name='osectl'?)" >&2; \
			exit 1; \
		fi; \
	done

install-completions: completions
	$(if $(wildcard $(BUILD)/completions/osectl),$(MKDIR) $(DESTDIR)$(BASH_COMPLETION_DIR) && \
		$(INSTALL_DATA) $(BUILD)/completions/osectl $(DESTDIR)$(BASH_COMPLETION_DIR)/osectl)
	$(if $(wildcard $(BUILD)/completions/_osectl),$(MKDIR) $(DESTDIR)$(ZSH_COMPLETION_DIR) && \
		$(INSTALL_DATA) $(BUILD)/completions/_osectl $(DESTDIR)$(ZSH_COMPLETION_DIR)/_osectl)
	$(if $(wildcard $(BUILD)/completions/osectl.fish),$(MKDIR) $(DESTDIR)$(FISH_COMPLETION_DIR) && \
		$(INSTALL_DATA) $(BUILD)/completions/osectl.fish $(DESTDIR)$(FISH_COMPLETION_DIR)/osectl.fish)

install-python:
ifeq ($(INSTALL_PYTHON),1)
	$(PIP_ENV) $(PYTHON) -m pip install --no-deps --disable-pip-version-check \
		--no-warn-script-location $(if $(DESTDIR),--root=$(DESTDIR)) --prefix=$(PREFIX) .
endif

uninstall:
	rm -f $(DESTDIR)$(DBUS_SYSTEM_CONF_DIR)/org.ose.Provisioning1.conf \
		$(DESTDIR)$(DBUS_SYSTEM_SERVICES_DIR)/org.ose.Provisioning1.service \
		$(addprefix $(DESTDIR)$(DBUS_INTERFACES_DIR)/,$(notdir $(INTERFACES))) \
		$(DESTDIR)$(POLKIT_ACTIONS_DIR)/org.ose.provisioning.policy \
		$(addprefix $(DESTDIR)$(SYSTEMD_UNIT_DIR)/,$(notdir $(UNITS))) \
		$(DESTDIR)$(TMPFILES_DIR)/oseprovd.conf \
		$(DESTDIR)$(MAN1_DIR)/osectl.1 $(DESTDIR)$(MAN8_DIR)/oseprovd.8 \
		$(DESTDIR)$(BASH_COMPLETION_DIR)/osectl $(DESTDIR)$(ZSH_COMPLETION_DIR)/_osectl \
		$(DESTDIR)$(FISH_COMPLETION_DIR)/osectl.fish
	@echo "kept $(DESTDIR)$(CONF_DIR)/oseprovd.toml; pip uninstall ose-provisioning removes the Python part"

check: check-units check-man

# systemd-analyze verify needs the ExecStart= binary and every unit ours depend on, so
# it runs on a root made of the host's units plus ours as installed. The binary there is
# a stub: pip installs the real one, and tests/unit/test_install_tree.py checks that it
# lands where ExecStart= looks. The man pages named in Documentation= are looked up in
# that root too (needs man-db). verify only warns on many mistakes (an unknown key, a
# typo in a section), so any output at all fails the check. Then each unit's exposure
# score is held to its line in systemd/security-threshold.
check-units:
	rm -rf $(VERIFY_ROOT)
	$(MKDIR) $(VERIFY_ROOT)$(SYSTEMD_UNIT_DIR) $(VERIFY_ROOT)$(BINDIR)
	cp -R $(HOST_UNIT_DIR)/. $(VERIFY_ROOT)$(SYSTEMD_UNIT_DIR)/
	$(MAKE) --no-print-directory install-systemd install-man DESTDIR=$(VERIFY_ROOT)
	test -x $(VERIFY_ROOT)$(BINDIR)/oseprovd || \
		{ printf '#!/bin/sh\nexit 1\n' >$(VERIFY_ROOT)$(BINDIR)/oseprovd && \
		chmod 0755 $(VERIFY_ROOT)$(BINDIR)/oseprovd; }
	out=$$(MANPATH=$(VERIFY_ROOT)$(DATADIR)/man $(SYSTEMD_ANALYZE) verify \
		--root=$(VERIFY_ROOT) --man=yes $(notdir $(UNITS)) 2>&1); rc=$$?; \
	if [ $$rc -ne 0 ] || [ -n "$$out" ]; then \
		echo "$$out"; echo "systemd-analyze verify failed (rc=$$rc)" >&2; exit 1; fi
	@echo "systemd-analyze verify: $(notdir $(UNITS)) OK"
	grep -v '^#' systemd/security-threshold | while read -r unit max; do \
		[ -n "$$unit" ] || continue; \
		n=$$(awk -v m="$$max" 'BEGIN { printf "%d", m * 10 + 0.5 }'); \
		out=$$($(SYSTEMD_ANALYZE) security --offline=true --threshold=$$n \
			--no-pager systemd/$$unit 2>&1); rc=$$?; \
		echo "$$out" | grep 'Overall exposure level' || { echo "$$out"; exit 1; }; \
		[ $$rc -eq 0 ] || { echo "$$unit: exposure above its threshold $$max" >&2; exit 1; }; \
	done

check-man:
	for page in $(MANPAGES); do \
		out=$$(groff -man -ww -z $$page 2>&1) && [ -z "$$out" ] || \
			{ echo "$$page: $$out" >&2; exit 1; }; \
	done
	@echo "man pages: $(MANPAGES) OK"

clean:
	rm -rf $(BUILD)
