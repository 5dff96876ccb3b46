"""Every method × dataset × backbone recipe, and the embedded `bench.py run` plan, resolve to exactly the
configs that the hand-written config code resolved before the move to pydantic (tests/data/resolved_recipes.json,
generated from that code; types included: 1.0 and 1 differ). That code saved the training regime under
`protocol:`; the stored configs are read as saved runs are, through `migrate_saved`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wsolbench.config import migrate_saved, resolve, to_dict
from wsolbench.engine.runner import default_run, plan_runs

BEFORE = {key: migrate_saved(config) for key, config in
          json.loads((Path(__file__).parent / "data" / "resolved_recipes.json").read_text()).items()}
RECIPES = sorted(key for key in BEFORE if not key.startswith("default_run/"))


def _typed(value: object) -> object:
    """JSON-comparable form that keeps int and float apart."""
    return json.loads(json.dumps(value, sort_keys=True))


@pytest.mark.parametrize("key", RECIPES)
def test_recipe_is_unchanged(key: str) -> None:
    method, dataset, backbone = key.split("/")
    overrides = [] if backbone == "default" else [f"method.backbone={backbone}"]
    now = _typed(to_dict(resolve(method=method, dataset=dataset, overrides=overrides)))
    assert json.dumps(now, sort_keys=True) == json.dumps(BEFORE[key], sort_keys=True)


def test_default_run_plan_is_unchanged() -> None:
    run = default_run()
    configs = plan_runs(run["plan"]["methods"], run["plan"]["datasets"], experiment=run["plan"]["experiment"],
                        base=run["base"])
    now = {f"default_run/{c.method.name}/{c.dataset.name}": _typed(to_dict(c)) for c in configs}
    want = {key: value for key, value in BEFORE.items() if key.startswith("default_run/")}
    assert json.dumps(now, sort_keys=True) == json.dumps(want, sort_keys=True)
