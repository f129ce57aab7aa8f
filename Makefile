# make demo: set up .venv, train every method on the built-in demo dataset, translate its test photos,
#            build the comparison report (report/index.html).
# make test: set up .venv and run the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo train-demo translate-demo report-demo test test-fast bench lint clean-demo

$(STAMP): requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	$(PY) -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

setup: $(STAMP)

demo: setup train-demo translate-demo report-demo

train-demo: setup
	$(PY) train.py --config experiments/quickstart.yaml --overwrite
	$(PY) train.py --config experiments/cut_demo.yaml --overwrite
	$(PY) train.py --config experiments/fastcut_demo.yaml --overwrite
	$(PY) train.py --config experiments/johnson_demo.yaml --overwrite
	$(PY) train.py --config experiments/wct_demo.yaml --overwrite

translate-demo: setup
	$(PY) test.py --checkpoint runs/quickstart --input datasets/demo/testB --output results/quickstart/BtoA \
		--direction BtoA --overwrite --gallery

report-demo: setup
	$(PY) report.py --config experiments/report_demo.yaml --output report

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) bench/bench.py

lint: setup
	$(PY) -m ruff check .

clean-demo:
	rm -rf runs/quickstart runs/cut_demo runs/fastcut_demo runs/johnson_demo runs/wct_demo results/quickstart report datasets/demo
