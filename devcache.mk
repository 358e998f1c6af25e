# devcache's targets for devstack, kept apart from the Makefile so that devstack can
# include them: devstack's Makefile reads a git-ignored `local.mk` from its own
# directory (`-include local.mk`), so a `local.mk` there holding
#
#   include /path/to/devcache/devcache.mk
#
# makes `make dev.cache.up` and the others work from devstack's directory.
# DEVCACHE is the devcache binary to run: the one on PATH, else the release build
# beside this file (found from this file's own path, not from the current directory).
DEVCACHE_DIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
DEVCACHE ?= $(shell command -v devcache 2>/dev/null || echo $(DEVCACHE_DIR)/target/release/devcache)

.PHONY: dev.cache.build dev.cache.image dev.cache.up dev.cache.down dev.cache.destroy \
	dev.cache.status dev.cache.watch dev.cache.warm dev.cache.export dev.cache.import dev.logs.devpi

dev.cache.build: ## Build devcache (target/release/devcache beside this file).
	cargo build --release --locked --manifest-path $(DEVCACHE_DIR)/Cargo.toml

dev.cache.image: ## Make the devcache image from the binary (dev.cache.up does it when needed).
	$(DEVCACHE) image

dev.cache.up: ## Start the PyPI cache and wire lms and studio (and enabled services) to it.
	$(DEVCACHE) up

dev.cache.down: ## Unwire the services and remove the cache container; the cached data stays.
	$(DEVCACHE) down

dev.cache.destroy: ## Like dev.cache.down, and delete everything cached.
	$(DEVCACHE) down --volumes

dev.cache.status: ## Show the cache, its hit rate, and which services use it.
	$(DEVCACHE) status

dev.cache.enable.%: ## Wire a service to the cache, e.g. make dev.cache.enable.ecommerce.
	$(DEVCACHE) enable $*

dev.cache.disable.%: ## Unwire a service and give back its own pip.conf, e.g. make dev.cache.disable.lms.
	$(DEVCACHE) disable $*

dev.cache.watch: ## Wire enabled services again whenever their containers start (Ctrl-C stops).
	$(DEVCACHE) watch

dev.cache.warm: ## Fill the cache with what lms and studio install (their uv.lock, else requirement files).
	$(DEVCACHE) warm lms studio

dev.cache.warm.%: ## Fill the cache with a service's lock or requirements, e.g. make dev.cache.warm.ecommerce.
	$(DEVCACHE) warm $*

dev.cache.export: ## Write the cache to devcache-bundle.tar.zst (BUNDLE=... to choose).
	$(DEVCACHE) export $(or $(BUNDLE),devcache-bundle.tar.zst)

dev.cache.import: ## Fill the cache from devcache-bundle.tar.zst (BUNDLE=... to choose).
	$(DEVCACHE) import $(or $(BUNDLE),devcache-bundle.tar.zst)

dev.logs.devpi: ## Follow the cache's logs.
	$(DEVCACHE) logs -f
