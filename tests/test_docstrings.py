"""Every Examples section in the installed package's docstrings runs and gives what it says."""
import doctest
import importlib
import pkgutil

import pytest

import sl_cy

# every public module, including those of subpackages (sl_cy.selection.bank, ...): doctest.testmod
# of a package only runs the examples of objects defined in its own __init__
MODULES = sorted(m.name for m in pkgutil.walk_packages(sl_cy.__path__, "sl_cy.")
                 if not any(part.startswith("_") for part in m.name.split(".")[1:]))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert res.failed == 0, f"{res.failed} docstring example(s) failed in {name}"
