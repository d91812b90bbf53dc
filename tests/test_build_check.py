"""Importing sl_cy from an unbuilt source tree says so and how to fix it (issue 12, item 5).

Each test copies the package's Python sources (no compiled ``_*.so``) into a temporary "checkout"
and imports it in a real subprocess started in that folder, the way a user who runs Python in a
fresh clone's root does. The subprocess runs with ``-S`` and only the folder of NumPy/SciPy on
``PYTHONPATH``: no ``.pth`` files, so an editable install of the sl_cy under test cannot supply
the compiled modules behind the copy's back.
"""
import os
import pathlib
import shutil
import subprocess
import sys

import numpy
import pytest

import sl_cy

PKG = pathlib.Path(sl_cy.__file__).resolve().parent
SITE = str(pathlib.Path(numpy.__file__).resolve().parents[1])


def _checkout(tmp_path, with_compiled=()):
    """A copy of the source tree holding only the .py files, plus the listed compiled modules."""
    root = tmp_path / "checkout"
    shutil.copytree(PKG, root / "sl_cy", ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    for name in with_compiled:
        for f in PKG.glob(f"{name}.*"):
            if f.suffix in (".so", ".pyd"):
                shutil.copy(f, root / "sl_cy" / f.name)
    return root


def _import_in(root, code="import sl_cy"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = SITE
    return subprocess.run([sys.executable, "-S", "-c", code], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


def test_unbuilt_source_tree_says_how_to_build(tmp_path):
    root = _checkout(tmp_path)
    r = _import_in(root)
    assert r.returncode != 0
    err = r.stderr
    assert "partially initialized module" not in err
    assert "ImportError: sl_cy has not been built" in err
    assert "sl_cy._profiles" in err and str(root / "sl_cy") in err
    assert "source tree" in err and str(root) in err
    assert "pip install ." in err and "pip install -e ." in err
    assert "python setup.py build_ext --inplace" in err
    assert "no compiled extension modules" in err
    # one clean error, not a chain of import tracebacks
    assert "During handling" not in err and "direct cause" not in err


def test_partly_built_tree_names_what_is_missing(tmp_path):
    root = _checkout(tmp_path, with_compiled=("_profiles",))
    r = _import_in(root)
    assert r.returncode != 0
    assert "sl_cy._likelihood" in r.stderr and "sl_cy._profiles," not in r.stderr
    assert "_profiles." in r.stderr                          # listed among the files found


def test_corrupt_extension_is_reported_as_unloadable(tmp_path):
    root = _checkout(tmp_path, with_compiled=("_profiles", "_lensing", "_photometry", "_selection", "_likelihood", "_tabulate"))
    bad = next(p for p in (root / "sl_cy").glob("_selection.*") if p.suffix in (".so", ".pyd"))
    bad.write_bytes(b"not a shared object")
    r = _import_in(root)
    assert r.returncode != 0
    assert "sl_cy._selection" in r.stderr and "cannot be loaded" in r.stderr and "rebuild" in r.stderr


def test_built_tree_imports(tmp_path):
    root = _checkout(tmp_path, with_compiled=("_profiles", "_lensing", "_photometry", "_selection", "_likelihood", "_tabulate"))
    r = _import_in(root, "import sl_cy; print(sl_cy.__file__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(root / "sl_cy" / "__init__.py")


def test_check_build_passes_in_this_process():
    from sl_cy._check_build import COMPILED_MODULES, check_build

    check_build()
    assert all(f"sl_cy.{m}" in sys.modules for m in COMPILED_MODULES)
