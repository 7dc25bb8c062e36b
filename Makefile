# make test: create .venv, install the project with its test extras, run the tests.
# make demo: set up as for make test (plus Blender in .cache/blender-venv for the export preview), then
# `mocap demo` (renders the demo take once into .cache/demo, runs every stage on it and prints the errors
# against the truth; the take report is .cache/demo/take/report/index.html).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The newest Python the pinned dependencies have wheels for (3.13; 3.12 works too): pyenv's when present, else
# python3.13 on PATH. `make test-newest` runs the tests on it in its own venv (.venv-3.13).
PY_NEWEST ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13 2>/dev/null))

.PHONY: test test-newest demo lint bench bench-setup real-check clean-venv blender-check system-deps pose-models

$(BIN)/python:
	@$(PY) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null || \
		{ echo "Python 3.11, 3.12 or 3.13 is required: $(PY) is not one (set PY=/path/to/python3.11)"; exit 1; }
	$(PY) -m venv $(VENV)

# System packages, installed only when missing: libusb-1.0 (open3d, the virtual studio's renderer, needs it to
# import) and Debian's chromium (the take report's test loads the page headless and takes a screenshot).
system-deps:
	@missing=""; \
	ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || missing="$$missing libusb-1.0-0"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml | $(BIN)/python system-deps
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -e ".[test,cluster]"
	@touch $(STAMP)

# Two heavier checks run too: the demo (tests/test_demo.py renders the demo take once into .cache/demo, runs
# every stage and checks the figures against the truth) and the Blender import check (tests/test_export_blender.py
# builds an isolated Python 3.13 venv with bpy in .cache/blender-venv once, about 45 s, and skips with the reason
# where Python 3.13 is absent).
# MediaPipe's heavy pose landmarker, for the crops of several people ([detect] crop_model): built once into
# .cache/pose_models from the npm package @mediapipe/pose (Apache-2.0, 41 MB download, ~3 s); where npm or the
# registry is missing, the detect stage uses the full model and says so in its report.
pose-models: $(STAMP)
	@$(BIN)/python tools/build_pose_landmarker.py --variant heavy --if-missing || \
		echo "(the heavy pose landmarker could not be built: several people's crops will use the full model)"
	@$(BIN)/python tools/build_pose_landmarker.py --variant hand --if-missing || \
		echo "(the hand landmarker could not be built: the hands' keypoints will be BlazePose's)"

# The tests run on $(TEST_WORKERS) worker processes (pytest-xdist; each module whole on one worker, the longest
# first: tests/conftest.py), after the tests that measure speed or pacing (marked quiet), which run first, alone.
# Both runs always run; either failing fails make test.
TEST_WORKERS ?= 2
# $(call run_tests,COMMAND): COMMAND (a python, with its environment) runs pytest both ways
run_tests = status=0; \
	$(1) -m pytest -q -m quiet || status=1; \
	$(1) -m pytest -q -m "not quiet" -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder || status=1; \
	exit $$status

test: $(STAMP) pose-models
	@$(call run_tests,MOCAP_BLENDER_CHECK=1 MOCAP_DEMO_CHECK=1 $(BIN)/python)

# The same tests on the newest supported Python, in .venv-3.13 (on Python 3.13 PyPI's torch 2.13.0 is the CUDA
# build, ~7 GB with its libraries; it runs on the CPU). The demo and the Blender check run once, on 3.11.
test-newest:
	@test -n "$(PY_NEWEST)" || { echo "Python 3.13 not found: set PY_NEWEST=/path/to/python3.13"; exit 1; }
	$(MAKE) --no-print-directory PY=$(PY_NEWEST) VENV=.venv-3.13 .venv-3.13/.installed pose-models
	@$(call run_tests,.venv-3.13/bin/python)

lint: $(STAMP)
	$(BIN)/ruff check .

# make bench: every benchmark (ours beside the peers on the same input, ratios printed)
bench: bench-setup
	$(BIN)/python benchmarks/bench_calibration.py
	$(BIN)/python benchmarks/bench_triangulation.py
	$(BIN)/python benchmarks/bench_export.py
	@test ! -f benchmarks/bench_fitting.py || $(BIN)/python benchmarks/bench_fitting.py
	$(BIN)/python benchmarks/bench_pipeline.py

# make bench-setup: the peer tools for benchmarks (aniposelib 0.8.0, Pose2Sim 0.10.49) in .venv without
# touching our OpenCV, numpy or torch. aniposelib comes with the `bench` extra (its requirements ask for
# opencv-contrib-python, numba, pandas, jax); Pose2Sim goes in with --no-deps because its requirements pull
# plain opencv-python (through rtmlib), opensim, openvino and PySide6; the extra lists what its triangulation
# needs. numpy and opencv-contrib are named on the command line so the resolver cannot move them.
# Then check_peers.py refuses an unsafe environment and runs each peer function we benchmark.
bench-setup: $(STAMP)
	$(BIN)/pip install --quiet "numpy>=2.2,<2.5" "opencv-contrib-python==5.1.0.95" "torch==2.13.0" -e ".[bench]"
	$(BIN)/pip install --quiet --no-deps "pose2sim==0.10.49"
	$(BIN)/python benchmarks/check_peers.py

# make real-check: the real-footage checks that need Pose2Sim's demo videos, which come in the pose2sim wheel
# (bench-setup installs it; make test does not, so CI skips them): tests/test_real_people.py runs Pose2Sim's
# multi-person demo end to end with two people (about 12 min on 2 cores), and test_real_footage.py's
# test_pose2sim_multi_person_demo_runs_end_to_end the same demo as one performer's take.
real-check: bench-setup pose-models
	MOCAP_DEMO_CHECK=1 $(BIN)/python -m pytest -q tests/test_real_people.py \
		tests/test_real_footage.py::test_pose2sim_multi_person_demo_runs_end_to_end

demo: $(STAMP) pose-models
	@$(BIN)/python -m mocap_studio.export.blender_preview --install || echo "(continuing without Blender: the report says why)"
	$(BIN)/mocap demo

clean-venv:
	rm -rf $(VENV)

# Blender 5.3 (bpy, Python 3.13, ~1 GB venv in .cache/blender-venv) imports our BVH/FBX/GLB and compares every
# joint on every frame, and the avatar's GLB/FBX/USDZ vertex by vertex; make test runs it as well, this target
# runs only it.
blender-check: $(STAMP)
	MOCAP_BLENDER_CHECK=1 $(BIN)/python -m pytest -q tests/test_export_blender.py
