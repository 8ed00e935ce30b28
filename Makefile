# The two commands of the quick start: `make demo` and `make test`.
# Both create .venv (Python 3.10+) and install nni-pl into it when needed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-extended lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/hpo_digits/demo.py

# two workers (pytest-xdist), each test file on one: most tests wait on processes, so two cores run twice the work
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not extended"

# what `make test` leaves out for time (benchmark smoke runs, Ray fault injection, 15 torchvision architectures)
test-extended: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m extended

lint: $(STAMP)
	$(VENV)/bin/ruff check nni_pl tests examples benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
