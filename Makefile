# The two commands a newcomer needs are `make test` and `make demo` (see README).
# Everything else they depend on is installed here, pinned, into git-ignored folders.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fleetflow-installed

.PHONY: setup test unit demo down status

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==25.2
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Python deps (pip), JVM jars (Maven, from pom.xml) and redis-server (apt).
setup: $(STAMP)
	$(BIN)/fleetflow setup

# Unit, MiniCluster, stack and API tests. Starts the local stack if it is not running.
test: setup
	$(BIN)/pytest

# Only the tests that need no services.
unit: $(STAMP)
	$(BIN)/pytest tests/unit

demo: setup
	$(BIN)/fleetflow demo

down: $(STAMP)
	$(BIN)/fleetflow down

status: $(STAMP)
	$(BIN)/fleetflow status
