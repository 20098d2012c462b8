# sendit-luigi: the two commands.
#   make demo   set up, then run the whole pipeline on sample data with the embedded defaults
#   make test   set up, then run the test suite (what CI runs, through .ci/run)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench setup clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -c 'import site, os; open(os.path.join(site.getsitepackages()[0], "sendit_luigi.pth"), "w").write(os.getcwd() + "\n")'
	touch $@

demo: setup
	$(BIN)/python -m sendit_luigi demo demo

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf demo .pytest_cache
