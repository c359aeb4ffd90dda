# Two commands are all the set-up anyone needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8080
DATA_DIR ?= ./data
# Debian packages the tests use: a browser for the page tests, espeak-ng/sox for fixtures.
SYSTEM_PACKAGES := chromium espeak-ng sox

.PHONY: run test test-fast test-stress bench lint system-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Stamps make re-runs instant while still reinstalling when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

# The speakers extra needs torch; the newest torch on PyPI pulls CUDA (a 6 GB venv), while
# this pin resolves to the ~200 MB CPU-only wheel (docs/speakers.md). Override: make TORCH=...
TORCH ?= torch==2.13.0

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[test,dev,ray,speakers]' '$(TORCH)'
	touch $@

run: $(VENV)/.installed
	$(PY) -m server --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

# Installs the Debian packages the browser tests need when we can (root with apt).
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing Debian packages:$$missing (install them with apt-get)"; fi; \
	fi

test: $(VENV)/.installed-test system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

# The suite while another process keeps one core busy: tests must wait on events, not
# on time, so they pass on a loaded machine too. STRESS_RUNS times in a row.
STRESS_RUNS ?= 2
test-stress: $(VENV)/.installed-test system-deps
	@$(PY) -c 'while True: pass' & burner=$$!; trap "kill $$burner" EXIT; \
	for run in $$(seq $(STRESS_RUNS)); do \
	  echo "--- stress run $$run of $(STRESS_RUNS), one core kept busy by pid $$burner ---"; \
	  $(PY) -m pytest $(PYTEST_ARGS) || exit 1; \
	done

# Everything except tests marked slow; for quick local iterations only.
test-fast: $(VENV)/.installed-test
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	$(PY) -m benchmarks

lint: $(VENV)/.installed-test
	$(PY) -m ruff check server pipeline tests benchmarks
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
