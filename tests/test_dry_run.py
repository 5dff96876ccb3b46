"""`--dry-run` on run / train / ablate: validated YAML documents with their cost, and nothing on disk."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner
from test_recipes import EXPECTED, assert_recipe

from wsolbench.cli import main
from wsolbench.config import from_dict, resolve, to_dict

METHODS = ["sat", "ts_cam", "scm", "cam"]


@pytest.fixture
def empty_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default data_root and output_dir are relative
    return tmp_path


@pytest.mark.parametrize("dataset", ["cub", "ilsvrc"])
def test_run_dry_run_prints_the_official_recipes_and_touches_nothing(empty_dir, dataset):
    result = CliRunner().invoke(main, ["run", "--dry-run", "--methods", ",".join(METHODS), "--dataset", dataset])
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.output))
    assert len(documents) == 4
    for method, document in zip(METHODS, documents, strict=True):
        assert document == to_dict(resolve(method=method, dataset=dataset))
        assert_recipe(from_dict(document), EXPECTED[(method, dataset)])
    assert f"not prepared at data/{dataset}" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("# total: 4 run(s)")
    assert list(empty_dir.iterdir()) == []


def test_dry_run_cost_lines(empty_dir):
    result = CliRunner().invoke(main, ["run", "--dry-run", "--methods", "sat,ts_cam", "--dataset", "cub,ilsvrc"])
    assert result.exit_code == 0, result.output
    cost = [line for line in result.output.splitlines() if line.startswith("# cost:")]
    # CUB train has 5,994 images (720 SAT steps of 256, as the official script's 24 per epoch × 30);
    # ILSVRC-2012 train has 1,281,167 (2,503 steps of 512 in SAT's single epoch).
    assert cost[0].startswith("# cost: 5,994 train images (shipped wsolevaluation CUB/train metadata) x 30 epochs "
                              "= 179,820 images; 720 optimizer steps of 256 images")
    assert cost[1].startswith("# cost: 1,281,167 train images (ILSVRC-2012 train) x 1 epochs = 1,281,167 images; "
                              "2,503 optimizer steps of 512 images")
    assert cost[2].startswith("# cost: 5,994 train images (shipped wsolevaluation CUB/train metadata) x 60 epochs "
                              "= 359,640 images; 2,820 optimizer steps of 128 images")
    total = 179_820 + 1_281_167 + 359_640 + 1_281_167 * 20
    assert f"# total: 4 run(s), {total:,} training images" in result.output


def test_train_and_ablate_dry_run(empty_dir):
    train = CliRunner().invoke(main, ["train", "--dry-run", "--method", "scm", "--dataset", "ilsvrc",
                                      "--set", "train.grad_accum=4"])
    assert train.exit_code == 0, train.output
    (document,) = yaml.safe_load_all(train.output)
    assert document["train"]["grad_accum"] == 4
    assert "optimizer steps of 512 images (4 x 128 per process x 1 processes)" in train.output
    ablate = CliRunner().invoke(main, ["ablate", "--dry-run", "--method", "sat", "--dataset", "synthetic"])
    assert ablate.exit_code == 0, ablate.output
    documents = list(yaml.safe_load_all(ablate.output))
    assert len(documents) > 1 and all(d["method"]["name"] == "sat" for d in documents)
    assert {d["experiment"].split("/")[0] for d in documents} == {"ablation-sat-synthetic"}
    assert list(empty_dir.iterdir()) == []


def test_dry_run_still_validates(empty_dir):
    bad_split = CliRunner().invoke(main, ["run", "--dry-run", "--methods", "sat", "--dataset", "cub",
                                          "--set", "train.grad_accum=3"])
    assert bad_split.exit_code == 2 and "divisible by grad_accum" in bad_split.output
    missing = CliRunner().invoke(main, ["run", "--dry-run", "--methods", "sat", "--dataset", "cub",
                                        "--set", "method.pretrained=/nowhere/deit.pth"])
    assert missing.exit_code == 2 and "weight file /nowhere/deit.pth does not exist" in missing.output
    assert list(empty_dir.iterdir()) == []
