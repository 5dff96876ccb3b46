"""Results tables: golden Markdown layout, LaTeX structure, CSV numbers, entry selection, paper rows."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
from wsolbench.reports.references import Reference
from wsolbench.reports.tables import (
    PAPER,
    PLAIN,
    build_table,
    get_style,
    latex_escape,
    select_entries,
    to_csv,
    to_latex,
    to_markdown,
)

from wsolbench.results import RESULT_COLUMNS


def _rows(run: str, method: str, backbone: str | None, seed: int, dataset: str, metrics: dict,
          split: str = "test", policy: str = "oracle-test", experiment: str = "exp") -> list[dict]:
    base = {"run_dir": run, "experiment": experiment, "dataset": dataset, "method": method,
            "backbone": backbone, "regime": "full", "seed": seed, "trainable_params": 1, "split": split,
            "eval_protocol": "wsolevaluation", "threshold_policy": policy, "checkpoint": "last"}
    return [{**base, "metric": k, "value": v} for k, v in metrics.items()]


def _frame() -> pd.DataFrame:
    rows = []
    rows += _rows("r/sat0", "sat", "deit_small_patch16_224", 0, "cub",
                  {"top1_loc": 80.0, "top5_loc": 90.0, "gt_known_loc": 95.0, "maxboxaccv2": 70.0,
                   "top1_cls": 85.0, "maxboxacc": 1.0})
    rows += _rows("r/sat0", "sat", "deit_small_patch16_224", 0, "cub", {"top1_loc": 1.0}, split="val")
    rows += _rows("r/sat1", "sat", "deit_small_patch16_224", 1, "cub",
                  {"top1_loc": 81.0, "top5_loc": 91.0, "gt_known_loc": 96.0, "maxboxaccv2": 71.0,
                   "top1_cls": 86.0})
    rows += _rows("r/ts_cam0", "ts_cam", "deit_tiny_patch16_224", 0, "cub",
                  {"top1_loc": 60.0, "gt_known_loc": 96.5, "maxboxaccv2": 72.25, "top1_cls": 70.0})
    rows += _rows("r/cam0", "cam", "resnet50", 0, "openimages", {"pxap": 58.0, "top1_cls": 66.0})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


GOLDEN = """\
| Method | Backbone | CUB Top-1 Loc | CUB Top-5 Loc | CUB GT-known Loc | CUB MaxBoxAccV2 | CUB Top-1 Cls | OpenImages PxAP | OpenImages Top-1 Cls |
|---|---|---:|---:|---:|---:|---:|---:|---:|
| CAM | ResNet50 | – | – | – | – | – | **58.00** | **66.00** |
| SAT | DeiT-S | **80.50 ± 0.71** | **90.50 ± 0.71** | 95.50 ± 0.71 | 70.50 ± 0.71 | **85.50 ± 0.71** | – | – |
| TS-CAM | DeiT-T | 60.00 | – | **96.50** | **72.25** | 70.00 | – | – |

Test split; eval protocol wsolevaluation, threshold policy oracle-test, checkpoint last (4 runs). \
Mean ± sample std over seeds where several exist.
"""  # noqa: E501


def test_golden_markdown_layout() -> None:
    table = build_table(select_entries(_frame()), PAPER)
    assert to_markdown(table) == GOLDEN


def test_plain_style_keeps_every_metric_with_raw_names_and_no_bold() -> None:
    text = to_markdown(build_table(select_entries(_frame()), get_style("plain")))
    header = text.splitlines()[0]
    assert "cub maxboxacc" in header and "| sat | deit_small_patch16_224 |" in text
    assert "**" not in text


def test_latex_is_balanced_booktabs_with_escaped_names() -> None:
    latex = to_latex(build_table(select_entries(_frame()), PLAIN))
    assert latex.count(r"\begin{tabular}") == latex.count(r"\end{tabular}") == 1
    assert latex.count(r"\begin{table}") == latex.count(r"\end{table}") == 1
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert latex.count(rule) == 1
    spec = re.search(r"\\begin\{tabular\}\{([lr]+)\}", latex).group(1)
    body = latex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(body) == 3
    for line in body:  # every row has exactly one cell per column
        assert line.endswith(r" \\") and len(re.findall(r"(?<!\\)&", line)) == len(spec) - 1
    assert r"ts\_cam & deit\_tiny\_patch16\_224" in latex
    assert "ts_cam" not in latex.replace(r"ts\_cam", "")
    assert r"$80.50 \pm 0.71$" in latex
    # header: a multicolumn per dataset (cub: 6 metrics in plain style, openimages: 2), cmidrules under them
    assert r"\multicolumn{6}{c}{cub} & \multicolumn{2}{c}{openimages} \\" in latex
    assert r"\cmidrule(lr){3-8}\cmidrule(lr){9-10}" in latex
    assert latex.count("{") == latex.count("}")


def test_latex_bold_and_escape_rules() -> None:
    latex = to_latex(build_table(select_entries(_frame()), PAPER))
    assert r"$\mathbf{80.50 \pm 0.71}$" in latex and r"\textbf{96.50}" in latex
    assert latex_escape("a_b & 50% #1 {x}") == r"a\_b \& 50\% \#1 \{x\}"


def test_csv_holds_unformatted_means_and_stds() -> None:
    frame = pd.read_csv(io.StringIO(to_csv(build_table(select_entries(_frame()), PAPER))))
    sat = frame[frame["method"] == "sat"].iloc[0]
    assert sat["cub.top1_loc"] == 80.5 and sat["cub.top1_loc.std"] == pytest.approx(0.707107)
    assert sat["seeds"] == 2 and sat["kind"] == "ours"
    assert list(frame["method"]) == ["cam", "sat", "ts_cam"]


def test_selection_prefers_the_runs_own_policy_and_honours_explicit_choices() -> None:
    rows = _rows("r/a", "sat", "deit_small_patch16_224", 0, "cub", {"maxboxaccv2": 70.0})
    rows += _rows("r/a", "sat", "deit_small_patch16_224", 0, "cub", {"maxboxaccv2": 65.0}, policy="val")
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    assert select_entries(frame)["value"].tolist() == [70.0]  # own policy unknown → first test entry
    frame["own_policy"] = "val"
    assert select_entries(frame)["value"].tolist() == [65.0]
    assert select_entries(frame, threshold_policy="oracle-test")["value"].tolist() == [70.0]
    with pytest.raises(ValueError, match=r"eval_protocol=sat.*available.*wsolevaluation/oracle-test/last"):
        select_entries(frame, protocol="sat")


def test_with_paper_adds_published_and_delta_rows() -> None:
    refs = [
        Reference("sat", "deit_small_patch16_224", "cub", "top1_loc", 80.96, "card", "sat"),
        Reference("sat", "deit_small_patch16_224", "cub", "gt_known_loc", 98.45, "card", "sat"),
        Reference("ts_cam", "deit_small_patch16_224", "cub", "top1_loc", 71.3, "ts card", "ts_cam"),
    ]
    table = build_table(select_entries(_frame()), PAPER, refs)
    kinds = [(r.method, r.kind, r.backbone) for r in table.rows]
    small, tiny = "deit_small_patch16_224", "deit_tiny_patch16_224"
    assert kinds == [("cam", "ours", "resnet50"), ("sat", "ours", small), ("sat", "paper", small),
                     ("sat", "delta", small), ("ts_cam", "ours", tiny), ("ts_cam", "paper", small)]
    delta = table.rows[3].cells
    assert delta[("cub", "top1_loc")].mean == pytest.approx(80.5 - 80.96)
    assert delta[("cub", "gt_known_loc")].mean == pytest.approx(95.5 - 98.45)
    text = to_markdown(table)
    assert "| SAT (paper) | DeiT-S | **80.96** | – | **98.45** |" in text
    assert "| Δ ours − paper | DeiT-S | -0.46 | – | -2.95 |" in text
    assert "| TS-CAM (paper) | DeiT-S | 71.30 |" in text  # other backbone: shown, no Δ row
    assert "SAT DeiT-S (paper) CUB: card; protocol: sat" in text


def test_several_experiments_get_an_experiment_column() -> None:
    rows = _rows("a/r", "sat", None, 0, "cub", {"maxboxaccv2": 1.0}, experiment="a")
    rows += _rows("b/r", "sat", None, 0, "cub", {"maxboxaccv2": 2.0}, experiment="b")
    text = to_markdown(build_table(select_entries(pd.DataFrame(rows, columns=RESULT_COLUMNS)), PAPER))
    assert "| Experiment | Method | Backbone | CUB MaxBoxAccV2 |" in text
    assert "| a | SAT | – | 1.00 |" in text and "| b | SAT | – | **2.00** |" in text
