# Relief Exchange: two commands. `make run` runs the system; `make test` runs the tests.
.PHONY: run test install lint docs deploy-check bench

PY := .venv/bin/python

install:
	@bash deploy/bootstrap.sh

run: install
	@$(PY) -m deploy.local run

test: install
	@$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install
	@.venv/bin/ruff check services tests deploy bench

docs: install
	@$(PY) -m services.docs

bench: install
	@$(PY) bench/matching.py
	@$(PY) bench/relay.py
	@$(PY) bench/pipeline.py
