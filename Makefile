# The README's two commands: `make demo` and `make test`. Both install into .venv on first use.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-all install bench clean

$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/v2v-migrate demo --out demo-out

# CI's test run: everything but slow and GPU tests (see pyproject markers).
test: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow and not gpu"

test-all: $(VENV)/.installed
	$(PY) -m pytest -q

clean:
	rm -rf demo-out .pytest_cache
