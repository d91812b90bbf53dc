"""Fail with a helpful message when the compiled core of sl_cy is missing (the scikit-learn way).

``import sl_cy`` from an unbuilt source tree (a fresh clone, or Python started in the repository
root, where the ``sl_cy/`` folder of the checkout shadows an installed copy) would otherwise end in
the puzzling "cannot import name '_profiles' from partially initialized module 'sl_cy'". This
module imports every compiled extension first and, if one is absent or cannot be loaded, raises an
:class:`ImportError` that says which, where it was looked for, and how to build it.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import os

__all__ = ["COMPILED_MODULES", "check_build"]

#: The extension modules built from ``csrc/*.pyx`` (see ``setup.py``), in dependency order.
COMPILED_MODULES = ("_profiles", "_lensing", "_photometry", "_selection", "_likelihood", "_tabulate")

_HOW_TO_BUILD = """\
To fix it, either
  - install sl_cy:            pip install .        (or, for development, pip install -e .)
    and, if you installed it non-editable, run Python outside the source tree so that the
    checkout's sl_cy/ folder does not shadow the installed package; or
  - build it in place:        python setup.py build_ext --inplace
    (needs Cython, NumPy, SciPy and a C compiler)."""


def _extension_files(folder: str, name: str) -> list[str]:
    """Files in ``folder`` that Python would load as the extension module ``name``."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    return sorted(e for e in entries
                  if any(e == name + suffix for suffix in importlib.machinery.EXTENSION_SUFFIXES))


def _compiled_in(folder: str) -> list[str]:
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    return sorted(e for e in entries if e.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)))


def check_build(package: str = "sl_cy", folder: str | None = None) -> None:
    """Import every compiled module of ``package``; raise a helpful ImportError if one fails.

    Raises
    ------
    ImportError
        naming the missing (or unloadable) modules, the folder searched, the extension files found
        there, and the commands that build them.
    """
    folder = folder or os.path.dirname(os.path.abspath(__file__))
    missing, broken = [], []
    for name in COMPILED_MODULES:
        try:
            importlib.import_module(f"{package}.{name}")
        except ImportError as exc:
            (broken if _extension_files(folder, name) else missing).append((name, exc))
    if not missing and not broken:
        return
    found = _compiled_in(folder)
    listing = ", ".join(found) if found else "no compiled extension modules"
    lines = []
    if missing:
        names = ", ".join(f"{package}.{n}" for n, _ in missing)
        lines.append(f"sl_cy has not been built: its compiled core ({names}) is missing from {folder}.")
        cwd = os.getcwd()
        if os.path.abspath(os.path.dirname(folder)) == os.path.abspath(cwd):
            lines.append(f"You are importing sl_cy from its source tree (the current directory, {cwd}), "
                         "which holds the uncompiled sources.")
        else:
            lines.append("It looks like you are importing sl_cy from a source tree that has not been compiled.")
    for name, exc in ([] if missing else broken):     # a missing module also breaks those cimporting it
        lines.append(f"The compiled module {package}.{name} in {folder} exists but cannot be loaded: {exc}. "
                     "It may have been built for another Python or NumPy version, or be out of date: rebuild it.")
    lines.append(f"Found in {folder}: {listing}.")
    lines.append(_HOW_TO_BUILD)
    raise ImportError("\n".join(lines), name=package) from None
