"""The GitHub workflows parse, and call the Makefile with no logic of their own."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
TARGETS = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))


def test_there_are_a_test_and_a_book_workflow():
    assert {p.stem for p in WORKFLOWS} >= {"test", "book"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_runs_only_make_targets(path):
    workflow = yaml.safe_load(path.read_text())
    assert workflow.get(True) or workflow.get("on"), "no trigger"  # YAML 1.1 reads the key `on` as True
    for name, job in workflow["jobs"].items():
        assert "runs-on" in job and job.get("steps"), name
        for step in job["steps"]:
            assert set(step) <= {"uses", "with", "run", "id", "name"}, step
            if "run" in step:
                command = step["run"].split()
                assert command[0] == "make" and set(command[1:]) <= TARGETS, f"{name}: {step['run']!r}"


def test_the_gpu_runner_label_is_set_in_one_place():
    texts = "".join(p.read_text() for p in WORKFLOWS)
    assert texts.count("vars.GPU_RUNNER") == 2  # the job's condition and its runner, both from one variable
    assert "make gpu" in texts and "gpu" in TARGETS
