# The two commands of the README: `make run` and `make test`.
VENV      ?= .venv
PYTHON    ?= python3
PY        := $(VENV)/bin/python
FULFIL    := $(VENV)/bin/fulfil
HOST      ?= 127.0.0.1
PORT      ?= 8000
# module plugins in this repository, each its own distribution
PLUGINS   := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
STAMP     := $(VENV)/.installed

.PHONY: install run test bench clean

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]' $(foreach p,$(PLUGINS),-e '$(p)[test]')
	touch $(STAMP)

install: $(STAMP)

run: install
	$(FULFIL) db upgrade
	$(FULFIL) demo --once
	$(FULFIL) serve --host $(HOST) --port $(PORT)

test: install
	$(VENV)/bin/pytest tests $(foreach p,$(PLUGINS),$(wildcard $(p)/tests))

bench: install
	$(PY) bench/engine.py

clean:
	rm -rf $(VENV) fulfil.db fulfil.db-wal fulfil.db-shm
