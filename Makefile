# Atmosphere Mail — `make run` starts the relay on its embedded defaults,
# `make test` runs the suite (installing what the tests need first).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test bench setup test-deps bytecode clean

setup: $(STAMP)

# uv fetches the packages in parallel: 20 s on a new machine where pip took 1 min 45 s; pip does it
# where uv cannot be had. Bytecode is compiled as pip would: where PYTHONDONTWRITEBYTECODE is set,
# every process would otherwise compile the libraries again (a whole run took 1.5 minutes longer).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	( $(BIN)/pip install --quiet --disable-pip-version-check uv && \
	  $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[test]' ) || \
	  $(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# The project's own bytecode: an editable install leaves it uncompiled, and where
# PYTHONDONTWRITEBYTECODE is set every relay, edge and CLI process would compile it again.
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 -x '/(node_modules|\.cache)/' runtime functions stream_apps tests bench

run: bytecode
	$(BIN)/atmos-relay serve $(if $(CONFIG),--config $(CONFIG))

# The system side (Debian packages, npm, the PDS build) needs no venv: it runs beside pip, not after.
test-deps:
	bash tests/setup/install-deps.sh & deps=$$!; $(MAKE) --no-print-directory bytecode; made=$$?; \
	wait $$deps && exit $$made

# The tests mostly wait on the processes they start (relays, BIND, MX, Kafka),
# so four workers keep two cores busy; an idle worker takes tests queued for a
# busy one (worksteal), so a long test does not hold up the end of the run.
# TEST_WORKERS=0 runs them one by one.
TEST_WORKERS ?= 4
test: test-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: test-deps
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) state .pytest_cache bench/out
