# closedloop: Lambda build targets.
#
# `sam build --build-in-source` (BuildMethod: makefile) runs `make build-<LogicalId>` in this
# directory with ARTIFACTS_DIR set, once per function. Every build-<LogicalId> target runs the SAME
# `cargo lambda build` over all nine binaries, so the first one compiles the workspace once (one
# feature resolution, one set of artifacts) and the other eight are cargo no-ops (~1 s each); then
# each copies its own `bootstrap` into ARTIFACTS_DIR.
#
# Knobs (environment or make variables):
#   LAMBDA_PROFILE   cargo profile: release (default; LTO, for AWS) or emulator (fast, for ministack)
#   LAMBDA_ARCH      arm64 (default, matches the template's default) or x86_64
#   LAMBDA_COMPILER  cargo | zig. Default: cargo when LAMBDA_ARCH is the host's and the profile is
#                    not release; zig otherwise (cross builds, and release builds linked against an
#                    old glibc so they run on provided.al2023 whatever the build host's glibc).
#   CARGO_TARGET_DIR honoured (default ./target).
#   CARGO_LAMBDA     the cargo-lambda command (default: `cargo lambda`; the venv from
#                    scripts/venv.sh must be first on PATH).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

LAMBDA_PROFILE ?= release
LAMBDA_ARCH ?= arm64
CARGO_LAMBDA ?= cargo lambda
TARGET_DIR := $(abspath $(or $(CARGO_TARGET_DIR),$(CURDIR)/target))

HOST_ARCH := $(shell uname -m | sed -e 's/aarch64/arm64/')

ifeq ($(LAMBDA_ARCH),arm64)
  ARCH_FLAG := --arm64
  RUST_TRIPLE := aarch64-unknown-linux-gnu
else ifeq ($(LAMBDA_ARCH),x86_64)
  ARCH_FLAG := --x86-64
  RUST_TRIPLE := x86_64-unknown-linux-gnu
else
  $(error LAMBDA_ARCH must be arm64 or x86_64, not '$(LAMBDA_ARCH)')
endif

ifndef LAMBDA_COMPILER
  ifeq ($(LAMBDA_ARCH)-$(filter-out release,$(LAMBDA_PROFILE)),$(HOST_ARCH)-$(LAMBDA_PROFILE))
    LAMBDA_COMPILER := cargo
  else
    LAMBDA_COMPILER := zig
  endif
endif

# Where the bootstraps land: one directory per (arch, profile), so an arm64 release build and an
# x86_64 emulator build never overwrite each other. Layout: $(LAMBDA_DIR)/<bin>/bootstrap.
LAMBDA_DIR := $(TARGET_DIR)/lambda/$(LAMBDA_ARCH)-$(LAMBDA_PROFILE)

# Logical id in template.yaml -> binary (= package) name.
FUNCTIONS := \
	RatingLinkFunction:rating-link \
	WebhooksFunction:webhooks \
	AdminApiFunction:admin-api \
	EventRelayFunction:event-relay \
	RulesFunction:rules \
	ActionsFunction:actions \
	SurveySchedulerFunction:survey-scheduler \
	SlaSweepFunction:sla-sweep \
	DetractorSweepFunction:detractor-sweep

BINS := $(foreach f,$(FUNCTIONS),$(word 2,$(subst :, ,$(f))))
LOGICAL_IDS := $(foreach f,$(FUNCTIONS),$(word 1,$(subst :, ,$(f))))
bin_of = $(word 2,$(subst :, ,$(filter $(1):%,$(FUNCTIONS))))

.PHONY: help lambda-bins lambda-target $(addprefix build-,$(LOGICAL_IDS))

help:
	@echo "make lambda-bins          build all nine bootstraps once (LAMBDA_PROFILE=$(LAMBDA_PROFILE) LAMBDA_ARCH=$(LAMBDA_ARCH) compiler=$(LAMBDA_COMPILER))"
	@echo "make build-<LogicalId>    what 'sam build --build-in-source' calls; needs ARTIFACTS_DIR"
	@echo "bootstraps land in $(LAMBDA_DIR)/<bin>/bootstrap"

lambda-target:
	@if ! rustup target list --installed 2>/dev/null | grep -qx '$(RUST_TRIPLE)'; then \
	  echo "rustup target add $(RUST_TRIPLE)"; rustup target add $(RUST_TRIPLE); fi

# One cargo invocation for all nine binaries (same feature unification every time).
# (CARGO_TARGET_DIR, not --target-dir: cargo-lambda 1.9 forwards --target-dir to `cargo metadata`,
# which rejects it.)
lambda-bins: lambda-target
	CARGO_TARGET_DIR=$(TARGET_DIR) $(CARGO_LAMBDA) build --profile $(LAMBDA_PROFILE) $(ARCH_FLAG) \
	  --compiler $(LAMBDA_COMPILER) --lambda-dir $(LAMBDA_DIR) \
	  $(addprefix --bin ,$(BINS))

define build_function
build-$(1): lambda-bins
	@test -n "$$$${ARTIFACTS_DIR:-}" || { echo "ARTIFACTS_DIR is not set (this target is meant for sam build)" >&2; exit 2; }
	mkdir -p "$$$${ARTIFACTS_DIR}"
	cp $(LAMBDA_DIR)/$(call bin_of,$(1))/bootstrap "$$$${ARTIFACTS_DIR}/bootstrap"
endef
$(foreach id,$(LOGICAL_IDS),$(eval $(call build_function,$(id))))
