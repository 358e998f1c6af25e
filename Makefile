# devcache's targets, in devstack's style: `make help` lists them. The targets live
# in devcache.mk, which devstack's own Makefile can include (see there).
include $(dir $(lastword $(MAKEFILE_LIST)))devcache.mk

.DEFAULT_GOAL := help
.PHONY: help

help: ## Display this help message.
	@echo "Please use \`make <target>' where <target> is one of"
	@grep -hE '^[a-zA-Z0-9_.%-]+:.*## ' $(MAKEFILE_LIST) | sort | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-26s %s\n", $$1, $$2}'

dev.logs.%: ## Follow a service's logs, e.g. make dev.logs.lms.
	$(DEVCACHE) logs -f $*
