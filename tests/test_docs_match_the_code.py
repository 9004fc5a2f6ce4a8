"""The docs describe the code as it is: the architecture's package table is generated from the packages' own
docstrings and names every package, methods.md counts the registry's methods, and the README's set-up claims
point at what the install script does."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = {n: w for n, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())}


def _package_table():
    spec = importlib.util.spec_from_file_location("package_table", REPO / "scripts" / "package_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_architecture_package_table_is_the_one_generated_from_the_docstrings():
    pt = _package_table()
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert pt.with_table(doc) == doc, "run `python scripts/package_table.py --write`"


def test_every_package_and_top_level_module_is_named_with_a_docstring():
    pt = _package_table()
    names = {name for name, _ in pt.units()}
    packages = {f"{top}/{p.name}/" for top in ("core", "studio") for p in (REPO / top).iterdir()
                if (p / "__init__.py").is_file()}
    assert packages <= names and {"core/rl/", "core/eval/", "core/launch/", "core/tools/", "core/methods.py"} <= names
    assert [name for name, path in pt.units() if not pt.summary(path)] == []


def test_methods_md_counts_the_registrys_methods():
    from core.methods import all_methods

    text = (REPO / "docs" / "methods.md").read_text(encoding="utf-8")
    count = re.search(r"trains with (\w+) methods", text).group(1)
    assert count == WORDS[len(all_methods())]


def test_the_readme_names_no_presets_in_resources_and_the_apt_list_lives_in_the_quickstart():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quickstart = (REPO / "docs" / "quickstart.md").read_text(encoding="utf-8")
    install = (REPO / "scripts" / "install.sh").read_text(encoding="utf-8")
    assert not (REPO / "resources" / "presets").exists() and "icons, presets" not in readme
    assert "bash scripts/install.sh && .venv/bin/python app.py --demo" in readme
    assert "bash scripts/install.sh --dev && .venv/bin/python -m pytest -q" in readme
    assert "libxcb-cursor0" not in readme and "### Debian packages" in quickstart
    for package in ("libgl1", "libxcb-cursor0", "build-essential", "fonts-wqy-microhei", "slurm-wlm", "x11-utils"):
        assert package in quickstart and package in install, package
