# devcache's targets, in devstack's style: `make help` lists them.
# DEVCACHE is the devcache binary to run (default: the one on PATH, else this repo's release build).
DEVCACHE ?= $(shell command -v devcache 2>/dev/null || echo ./target/release/devcache)

.DEFAULT_GOAL := help
.PHONY: help dev.cache.build dev.cache.image dev.cache.up dev.cache.down dev.cache.destroy \
	dev.cache.status dev.cache.watch dev.cache.warm dev.cache.export dev.cache.import dev.logs.devpi

help: ## Display this help message.
	@echo "Please use \`make <target>' where <target> is one of"
	@grep -hE '^[a-zA-Z0-9_.%-]+:.*## ' $(MAKEFILE_LIST) | sort | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-26s %s\n", $$1, $$2}'

dev.cache.build: ## Build devcache (./target/release/devcache).
	cargo build --release --locked

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

dev.logs.%: ## Follow a service's logs, e.g. make dev.logs.lms.
	$(DEVCACHE) logs -f $*
