# The README's two commands: `make demo` and `make test`. Both install into .venv on first use.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-all install milvus-server bench clean

$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh

install: $(VENV)/.installed

# A real Milvus server (2.3.5 standalone) for the `server` tests, in its own tool folder .tools/milvus.
milvus-server:
	bash scripts/install_milvus_server.sh

demo: $(VENV)/.installed
	$(VENV)/bin/v2v-migrate demo --out demo-out

# CI's test run: everything but slow and GPU tests (see pyproject markers); the `server` tests run when
# `make milvus-server` installed the server (CI does), and skip with the reason otherwise.
test: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow and not gpu"

test-all: $(VENV)/.installed
	$(PY) -m pytest -q

clean:
	rm -rf demo-out .pytest_cache
