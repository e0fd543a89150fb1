# paizoo: `make demo` sets up and reproduces a quick leaderboard; `make test` sets up and tests.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.paizoo-installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup postgres data demo test lint regression clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres,ray,slurm]'
	touch $(STAMP)

setup: $(STAMP) postgres

# The PostgreSQL store's tests start a throwaway server from Debian's `postgresql` package
# (initdb + pg_ctl); install it when we may (root on Debian/Ubuntu) and it is missing.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null \
		&& [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) \
		>/dev/null 2>&1 || echo "note: could not install postgresql; its tests will skip"; \
	fi

# Fashion-MNIST comes from Debian's `dataset-fashion-mnist` package when we may install it
# (root on Debian/Ubuntu); otherwise the quick leaderboard falls back to scikit-learn's digits.
data:
	@if [ ! -d $(FMNIST_DIR) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
		|| echo "note: could not install dataset-fashion-mnist; the demo uses digits"; \
	fi

demo: setup data
	OMP_NUM_THREADS=1 $(VENV)/bin/paizoo leaderboard run leaderboards/quick.yaml --threads 1

# The regression from the committed stores: metrics tables, leaderboards/regression.md (headed by
# the command) and paizoo/regression/predictors/default.skops with its validity domain.
# More options: make regression REGRESS_ARGS="--note '...'" (see paizoo regress rebuild --help).
REGRESS_ARGS ?=
regression: setup
	OMP_NUM_THREADS=1 $(VENV)/bin/paizoo regress rebuild $(REGRESS_ARGS)

test: setup data
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check paizoo tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
