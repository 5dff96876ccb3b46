"""Run folders and reports never load torch: reading results and rendering reports stay light."""

from __future__ import annotations

from test_metrics_startup import loaded_after


def test_results_module_imports_without_torch():
    assert loaded_after("import wsolbench.results") == []


def test_reports_import_without_torch():
    modules = ("ablation", "html", "plots", "references", "report", "runs", "summary", "tables", "thresholds",
               "uncertainty")
    assert loaded_after("\n".join(f"import wsolbench.reports.{m}" for m in modules)
                        + "\nimport wsolbench.ablation_manifest\nimport wsolbench.prepared_dataset") == []
