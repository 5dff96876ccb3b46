"""Registries: decorators, plugin discovery, entry points, and the `list` command."""

from __future__ import annotations

from importlib import metadata

import pytest
from click.testing import CliRunner

from wsolbench.cli import main
from wsolbench.registry import DATASETS, METHODS, Registry, RegistryError

BUILTIN_METHODS = {"cam", "center", "sat", "scm", "ts_cam"}
BUILTIN_DATASETS = {"synthetic", "cub", "ilsvrc", "openimages", "stanford_dogs", "aircraft", "cars"}


def test_builtin_plugins_are_registered() -> None:
    assert BUILTIN_METHODS <= set(METHODS.names())
    assert BUILTIN_DATASETS <= set(DATASETS.names())


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(RegistryError, match=r"unknown method 'ts-cam' \(did you mean 'ts_cam'\?\)"):
        METHODS.get("ts-cam")


def test_duplicate_registration_fails() -> None:
    registry: Registry[object] = Registry("thing", "wsolbench.reports", None)
    registry.register("a")(object())
    with pytest.raises(RegistryError, match="thing 'a' is registered twice"):
        registry.register("a")(object())


def test_entry_point_plugins_are_loaded(tmp_path, monkeypatch) -> None:
    """A third-party package's entry point in `wsolbench.methods` registers on import."""
    module = tmp_path / "thirdparty_wsol.py"
    module.write_text(
        "import wsolbench_test_registry as r\n"
        "@r.REG.register('external')\n"
        "class External:\n"
        "    pass\n"
    )
    holder = tmp_path / "wsolbench_test_registry.py"
    holder.write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    import wsolbench_test_registry

    registry: Registry[object] = Registry("method", "wsolbench.reports", "wsolbench.test_group")
    wsolbench_test_registry.REG = registry
    entry = metadata.EntryPoint(name="external", value="thirdparty_wsol", group="wsolbench.test_group")
    monkeypatch.setattr(
        metadata, "entry_points", lambda group=None: [entry] if group == "wsolbench.test_group" else []
    )
    assert "external" in registry.names()
    assert registry.origin("external") == "thirdparty_wsol"


def test_list_shows_methods_and_datasets() -> None:
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0, result.output
    for name in BUILTIN_METHODS | BUILTIN_DATASETS:
        assert f"  {name} " in result.output


def test_every_method_declares_its_display_names() -> None:
    """Tables and plots take method and backbone names from the plugins; nothing is left undeclared."""
    from wsolbench.registry import backbone_display_names, method_display_names

    names = method_display_names()
    assert {name: names[name] for name in BUILTIN_METHODS} == {
        "cam": "CAM", "center": "Center baseline", "sat": "SAT", "scm": "SCM", "ts_cam": "TS-CAM"}
    for name in BUILTIN_METHODS:
        cls = METHODS.get(name)
        assert set(cls.backbone_names) == set(cls.backbones), name
    backbones = backbone_display_names()
    assert backbones["deit_small_patch16_224"] == "DeiT-S" and backbones["resnet50"] == "ResNet50"


def test_published_names_cover_only_what_no_plugin_names(tmp_path) -> None:
    from wsolbench.reports.references import load_references, published_names
    from wsolbench.reports.tables import backbone_display_name, method_display_name

    from wsolbench.errors import BadFileError
    from wsolbench.registry import backbone_display_names

    published = published_names()
    assert not set(published["methods"]) & set(METHODS.names())
    assert not set(published["backbones"]) & set(backbone_display_names())
    for ref in load_references():  # every published row has a display name
        assert method_display_name(ref.method) != ref.method, ref.method
        assert ref.backbone is None or backbone_display_name(ref.backbone) != ref.backbone, ref.backbone
    assert method_display_name("acol") == "ACoL" and backbone_display_name("conformer_small_patch16") == "Conformer-S"
    assert method_display_name("unknown_method") == "unknown_method"
    bad = tmp_path / "refs.yaml"
    bad.write_text("names:\n  methods: [has]\ngroups: []\n")
    with pytest.raises(BadFileError, match="names.methods must map ids to display names"):
        published_names(bad)
