# One command per job on a fresh machine (README.md, top):
#
#   make train    set up, then run the main job (python -m pyfaid.train, configs/default.yaml)
#   make test     set up, then run the tests (pytest tests)
#
# Setting up is README's "Install" steps, in order: the requirements, facenet-pytorch without its
# dependencies (its metadata pins an old torch), the test requirements (make test), and pyfaid
# itself (pip install --no-build-isolation ., which compiles the ops; CUDA too when torch has CUDA
# and nvcc is found). Every step is idempotent, and make skips them all while nothing they depend
# on changed: a stamp per Python environment (build/.installed-<hash of sys.prefix>) records the
# last set-up, so a new virtual environment sets itself up again.
#
# Variables: PYTHON (default: python), ARGS (extra arguments for the job, e.g.
# make train ARGS="--set train.max_minutes=5", make test ARGS="-k blendshapes").

PYTHON ?= python
PIP = $(PYTHON) -m pip
ARGS ?=
ENV_ID := $(shell $(PYTHON) -c "import hashlib, sys; print(hashlib.sha1(sys.prefix.encode()).hexdigest()[:10])")
STAMP := build/.installed-$(ENV_ID)
TEST_STAMP := build/.test-requirements-$(ENV_ID)
SOURCES := setup.py requirements.txt $(shell find csrc pyfaid configs -type f -not -path '*/__pycache__/*' \
	-not -name '*.so' -not -name '*.pyc' 2>/dev/null)

.PHONY: train test install install-test

train: install
	$(PYTHON) -m pyfaid.train $(ARGS)

test: install install-test
	$(PYTHON) -m pytest tests -q -ra $(ARGS)

install: $(STAMP)

install-test: $(TEST_STAMP)

$(STAMP): $(SOURCES)
	@mkdir -p build
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps facenet-pytorch==2.6.0
	@echo "$(PIP) install --no-build-isolation .   (log: build/pip_install.log)"
	@$(PIP) install --no-build-isolation -v . > build/pip_install.log 2>&1 || \
		{ tail -n 80 build/pip_install.log; echo "pip install of pyfaid failed (build/pip_install.log)"; exit 1; }
	@grep -E "^pyfaid:" build/pip_install.log || true
	@touch $@

$(TEST_STAMP): requirements-test.txt
	@mkdir -p build
	$(PIP) install -r requirements-test.txt
	@touch $@
.NOTPARALLEL:
