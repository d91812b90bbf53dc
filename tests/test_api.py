"""The public API: what the top level holds, positional traps, the seed's names and call forms."""
import inspect

import numpy as np
import pytest

import sl_cy

# Public callables of sl_cy.__all__ that may take more than three positional arguments, with why.
# Everything else takes at most three; the rest of its arguments are keyword-only, so that a
# positional mix-up (a different order of zl/zs/gamma_in/c_halo, a magnitude limit taken for a
# seed) is a TypeError instead of a different lens.
POSITIONAL_EXCEPTIONS = {
    "selection_function": "seed call form selection_function(mu, m_lim, ms, sigma_m), documented in the seed",
    "mag_likelihood": "seed call form mag_likelihood(m_obs, mu, ms, sigma_m), documented in the seed",
    "solve_lens_parameters_from_obs": "seed name: its four inputs (xA_obs, xB_obs, logRe_obs, logM_halo) have no "
                                      "default and are passed positionally by the seed's code; the rest is "
                                      "keyword-only",
    "compute_detJ": "seed name: same four required inputs as solve_lens_parameters_from_obs; the rest is "
                    "keyword-only",
    "BankProposal.logpdf": "the proposal density at the same four required coordinates as "
                           "SelectionQuadrature.rate; model and block are keyword-only",
    "SelectionQuadrature.rate": "the per-galaxy selection rate T(logM_star, logRe, logM_halo, gamma_in): the four "
                                "required coordinates of the tabulated rate (no defaults, no optional argument)",
}
MAX_POSITIONAL = 3


def _n_positional(obj) -> int | None:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):          # not introspectable (a constant, a C builtin)
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = list(sig.parameters.values())
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 10 ** 6
    return sum(p.kind in kinds for p in params)


def _public_callables():
    for name in sl_cy.__all__:
        obj = getattr(sl_cy, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield name, obj
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and inspect.isfunction(member):
                    yield f"{name}.{attr}", member


def test_top_level_is_small_and_complete():
    assert 25 <= len(sl_cy.__all__) <= 50
    assert len(set(sl_cy.__all__)) == len(sl_cy.__all__)
    for name in sl_cy.__all__:
        assert hasattr(sl_cy, name), name


SEED_NAMES = ["run_mock_simulation", "generate_samples", "MODEL_PARAMS", "LensModel", "solve_single_lens",
              "solve_lens_parameters_from_obs", "compute_detJ", "lens_properties", "LensGrid",
              "tabulate_likelihood_grids", "log_prior", "log_likelihood", "log_posterior", "run_mcmc",
              "build_K_table", "save_K_table_hdf5", "load_K_interpolator", "write_run_hdf5", "write_A_eta_hdf5",
              "selection_function", "mag_likelihood", "Dang", "Sigma_cr", "rhoc", "SCATTER"]


@pytest.mark.parametrize("name", SEED_NAMES)
def test_seed_names_stay_at_the_top_level(name):
    assert name in sl_cy.__all__ and hasattr(sl_cy, name)


def test_no_public_function_takes_more_than_three_positional_arguments():
    too_many = {}
    for name, obj in _public_callables():
        n = _n_positional(obj)
        if n is None:
            continue
        if inspect.isfunction(obj) and next(iter(inspect.signature(obj).parameters), None) in ("self", "cls"):
            n -= 1                           # a method's self is not an argument the caller passes
        if n > MAX_POSITIONAL and name not in POSITIONAL_EXCEPTIONS:
            too_many[name] = str(inspect.signature(obj))
    assert not too_many, too_many


def test_exceptions_are_real():
    """The exception list names no function that no longer needs it."""
    from sl_cy import selection

    for name in POSITIONAL_EXCEPTIONS:
        obj = sl_cy if hasattr(sl_cy, name.split(".")[0]) else selection
        for part in name.split("."):
            obj = getattr(obj, part)
        n = _n_positional(obj) - ("." in name)          # a method's self
        assert n > MAX_POSITIONAL, name


def test_positional_traps_raise():
    # gamma_in, c_halo (forward_solve) vs zl, zs (LensModel): different positional orders
    with pytest.raises(TypeError):
        sl_cy.forward_solve(11.5, 13.0, 0.9, 0.3, 2.0)
    with pytest.raises(TypeError):
        sl_cy.LensModel(11.5, 13.0, 0.9, 0.3, 2.0)
    # the magnitude limit is not the second positional argument
    with pytest.raises(TypeError):
        sl_cy.run_mock_simulation(20_000, 2)
    with pytest.raises(TypeError):
        sl_cy.simulate_mock(20_000, 2)
    with pytest.raises(TypeError):
        sl_cy.invert_images(6.6, -3.1, 0.9, 13.0)


def test_keyword_forms_give_the_same_lens():
    a = sl_cy.forward_solve(11.5, 13.0, 0.9, zl=0.3, zs=2.0)
    m = sl_cy.LensModel(11.5, 13.0, 0.9, zl=0.3, zs=2.0)
    assert float(a["theta_e"]) == m.einstein_radius()


def test_seed_call_forms_work():
    """The call forms documented by the seed (seeds/000) still work."""
    m = sl_cy.LensModel(logM_star=11.5, logM_halo=13.0, logRe=0.9, zl=0.3, zs=2.0, gamma_in=1.0, c_halo=5.0)
    xA, xB = sl_cy.solve_single_lens(m, 0.5)
    assert xA > 0 > xB
    p = sl_cy.lens_properties(m, 0.5)
    assert p is not None
    r = sl_cy.solve_lens_parameters_from_obs(xA, xB, 0.9, 13.0)
    assert r[0] == pytest.approx(11.5, abs=1e-9)
    assert np.isfinite(sl_cy.compute_detJ(xA, xB, 0.9, 13.0))
    assert 0 <= sl_cy.selection_function(2.0, 26.5, 25.0, 0.1) <= 1
    assert np.isfinite(sl_cy.mag_likelihood(24.0, 2.0, 25.0, 0.1))
    for name in ("run_mock_simulation", "tabulate_likelihood_grids", "generate_samples"):
        first = next(iter(inspect.signature(getattr(sl_cy, name)).parameters))
        assert first in ("n_samples", "mock_observed_data", "n"), name
    assert list(inspect.signature(sl_cy.tabulate_likelihood_grids).parameters)[:2] == ["mock_observed_data",
                                                                                       "logMh_grid"]


def test_reference_code_lives_in_testing():
    import sl_cy.ktable
    import sl_cy.likelihood
    import sl_cy.testing

    for name in ("log_likelihood_numpy", "K_direct", "gnfw_quadrature", "ref_adaptive_columns",
                 "ref_place_column", "ref_forward_solve", "RefLens"):
        assert callable(getattr(sl_cy.testing, name)), name
        assert name not in sl_cy.__all__
    assert not hasattr(sl_cy.likelihood, "log_likelihood_numpy")
    assert not hasattr(sl_cy.ktable, "K_direct")
    with pytest.raises(ImportError):
        import sl_cy.reference  # noqa: F401


def _module_callables():
    """Every public function and public method (plain classes' __init__ included) of every public
    module of sl_cy; dataclass records and the reference code of sl_cy.testing are left out."""
    import dataclasses
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(sl_cy.__path__, "sl_cy."):
        if info.name.rsplit(".", 1)[-1].startswith("_") or info.name == "sl_cy.testing":
            continue
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != info.name:
                continue
            if inspect.isfunction(obj):
                yield name, obj
            elif inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    plain_init = attr == "__init__" and not dataclasses.is_dataclass(obj)
                    if inspect.isfunction(member) and (not attr.startswith("_") or plain_init):
                        yield f"{name}.{attr}", member


def test_no_function_of_any_module_takes_more_than_three_positional_arguments():
    too_many = {}
    for name, obj in _module_callables():
        params = [p for p in inspect.signature(obj).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in ("self", "cls")]
        if len(params) > MAX_POSITIONAL and name not in POSITIONAL_EXCEPTIONS:
            too_many[f"{obj.__module__}.{name}"] = [p.name for p in params]
    assert not too_many, too_many


def test_selection_switch_has_one_name_and_the_seed_aliases():
    from sl_cy.likelihood import use_selection_flag

    assert use_selection_flag() is True and use_selection_flag(False) is False
    assert use_selection_flag(None, eta=False) is False and use_selection_flag(None, selection=0) is False
    with pytest.raises(TypeError, match="not both"):
        use_selection_flag(True, eta=False)
    _, obs = sl_cy.run_mock_simulation(20_000, seed=3)
    grids = sl_cy.tabulate_likelihood_grids(obs.iloc[:6])
    e = np.array([0.0, 12.91, 2.04, 0.37, 1.0, 0.2])
    off = sl_cy.log_likelihood(e, grids, use_selection=False)
    assert sl_cy.log_likelihood(e, grids, selection=False) == off != sl_cy.log_likelihood(e, grids)
    a = sl_cy.run_mcmc(grids, nwalkers=14, nsteps=3, seed=1, progress=False, use_selection=False).get_chain()
    b = sl_cy.run_mcmc(grids, nwalkers=14, nsteps=3, seed=1, progress=False, eta=False).get_chain()
    assert np.array_equal(a, b)
