VENV ?= .venv
PY := $(VENV)/bin/python
MATRIX ?= matrix_config/examples/enterprise.yaml

.PHONY: venv run test bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

run: venv
	$(VENV)/bin/escalation validate $(MATRIX)
	$(VENV)/bin/escalation simulate $(MATRIX) tests/fixtures/tickets/*.json
	$(VENV)/bin/escalation serve --matrix $(MATRIX)

test: venv
	$(PY) -m pytest -q

bench: venv
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
