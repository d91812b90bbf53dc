"""The compiled adaptive column rule (csrc/tabulate.pyx) against its former Python form
(sl_cy.testing.ref_adaptive_columns): same nodes and weights, on mock lenses and edge cases."""
import numpy as np
import pytest

import sl_cy
from sl_cy import _tabulate
from sl_cy.cosmology import get_cosmology
from sl_cy.grids import (DEFAULT_GAMMA_GRID, DEFAULT_LOGMH_GRID, PADDING, adaptive_columns, adaptive_columns_batch,
                         adaptive_n_nodes, tabulate_likelihood_grids)
from sl_cy.testing import ref_adaptive_columns, ref_place_column

GAMMA_WIDE = np.round(np.arange(0.0, 2.4 + 1e-9, 0.1), 10)     # the whole gamma_in domain


def _lenses(observed):
    o = {c: observed[c].to_numpy(float) for c in ("xA", "xB", "logRe", "logM_star_sps_observed", "zl", "zs")}
    s = np.sign(o["xA"])
    o["xA"], o["xB"] = o["xA"] * s, o["xB"] * s
    return o


def _ref(o, i, gamma, mh=DEFAULT_LOGMH_GRID, **kw):
    return ref_adaptive_columns(o["xA"][i], o["xB"][i], o["logRe"][i], o["logM_star_sps_observed"][i], gamma, mh,
                                zl=o["zl"][i], zs=o["zs"][i], **kw)


def _batch(o, gamma, mh=DEFAULT_LOGMH_GRID, **kw):
    return adaptive_columns_batch(o["xA"], o["xB"], o["logRe"], m_obs=o["logM_star_sps_observed"], gamma_axis=gamma, logMh_axis=mh,
                                  zl=o["zl"], zs=o["zs"], **kw)


def _same(a, b):
    """Equal nodes and weights: bit for bit (NaN == NaN), else report the largest difference."""
    (am, aw), (bm, bw) = a, b
    if np.array_equal(am, bm, equal_nan=True) and np.array_equal(aw, bw):
        return True
    same_slots = np.array_equal(np.isnan(am), np.isnan(bm))
    dm = np.nanmax(np.abs(am - bm)) if same_slots else np.inf
    return same_slots and dm <= 1e-12 and np.max(np.abs(aw - bw)) <= 1e-12


@pytest.fixture(scope="module")
def mock4():
    _, observed = sl_cy.run_mock_simulation(60_000, seed=4, show_progress=False)
    return _lenses(observed)


@pytest.fixture(scope="module")
def mock11():
    _, observed = sl_cy.run_mock_simulation(30_000, seed=11, show_progress=False)
    return _lenses(observed.iloc[:40])


def test_compiled_rule_equals_python_rule_on_mock_lenses(mock4):
    """All lenses of a seeded mock through the compiled rule, gamma_in over its whole domain (no
    radial critical curve at the steep end: columns without a valid piece); against the Python
    rule on the first 30 lenses and on every lens with a column without a valid piece."""
    m, w, info = _batch(mock4, GAMMA_WIDE, info=True)
    n = len(mock4["xA"])
    assert n > 150 and m.shape == (n, adaptive_n_nodes(DEFAULT_LOGMH_GRID), len(GAMMA_WIDE))
    empty = np.nonzero((info["n_pieces"] == 0).any(axis=1))[0]
    assert len(empty) >= 2
    for i in sorted(set(range(30)) | set(empty)):
        assert _same((m[i], w[i]), _ref(mock4, i, GAMMA_WIDE)), f"lens {i}"
    assert info["n_points"].min() > 1000


def test_compiled_rule_equals_python_rule_default_gamma_finer_step(mock11):
    m, w = _batch(mock11, DEFAULT_GAMMA_GRID, step=0.5)
    for i in range(0, 40, 2):
        assert _same((m[i], w[i]), _ref(mock11, i, DEFAULT_GAMMA_GRID, step=0.5)), f"lens {i}"


def test_column_needing_more_nodes_than_slots(mock11):
    """Long columns squeezed into few slots (the rule's coarser spacing) and a scan axis of
    other spacing."""
    mh = np.linspace(10.0, 16.0, 37)
    used_full = np.isfinite(_batch(mock11, DEFAULT_GAMMA_GRID, mh=mh)[0]).sum(axis=1)
    for n_nodes in (6, 12, 25):
        m, w = _batch(mock11, DEFAULT_GAMMA_GRID, mh=mh, n_nodes=n_nodes)
        assert (used_full > n_nodes).sum() > 100        # many columns need more nodes than slots
        for i in range(0, 40, 5):
            r = _ref(mock11, i, DEFAULT_GAMMA_GRID, mh=mh, n_nodes=n_nodes)
            assert _same((m[i], w[i]), r)


def test_no_valid_piece_anywhere(mock11):
    """A logM* window far from the curve: no piece in any column (all NaN / 0), as the Python rule."""
    m, w = _batch(mock11, DEFAULT_GAMMA_GRID, window=(5.0, 6.0))
    assert np.isnan(m).all() and (w == 0).all()
    r = _ref(mock11, 0, DEFAULT_GAMMA_GRID, window=(5.0, 6.0))
    assert _same((m[0], w[0]), r)


def test_placement_with_several_pieces_equals_python_placement():
    """The placement step on synthetic traces: several pieces (validity holes, logM* leaving and
    re-entering the window), one-point pieces (dropped), the coarser spacing of long columns and
    more pieces than slots (the Python rule fails there; the compiled one flags it)."""
    rng = np.random.default_rng(0)
    multi = refused = 0
    for _ in range(600):
        n = int(rng.integers(1, 150))
        m = 11.0 + np.cumsum(rng.uniform(1e-6, 0.1, n))
        L = 11.0 + np.cumsum(rng.normal(0.0, 0.05, n)) * rng.choice([1.0, 10.0])
        ok = rng.random(n) > rng.choice([0.0, 0.05, 0.3])
        n_nodes = int(rng.choice([1, 3, 10, 40, 200]))
        step = float(rng.choice([0.25, 1.0, 3.0]))
        cm, cw, n_pieces, flag = _tabulate.place_trace(m, L, ok, 10.5, 11.5, step, 0.1, 0.1, n_nodes, 0.7)
        try:
            r = ref_place_column(m, np.where(ok, L, np.nan), ok, 10.5, 11.5, 0.1, 0.1, step, n_nodes, 0.7)
        except ValueError:       # more pieces than n_nodes // 2
            assert flag == 1 and 2 * n_pieces > n_nodes
            refused += 1
            continue
        assert flag == 0
        multi += n_pieces >= 2
        assert _same((cm, cw), r)
        _check_piece_codes(m, L, ok, step, n_nodes, cm, n_pieces)
    assert multi > 50 and refused > 10


def _check_piece_codes(m, L, ok, step, n_nodes, cm, n_pieces):
    """The piece codes of place_trace: every used slot a node, one first and one last node per
    piece at the trace piece's ends (same logMh), pieces in consecutive slots."""
    from sl_cy.grids import PIECE_CODES

    out = _tabulate.place_trace(m, L, ok, 10.5, 11.5, step, 0.1, 0.1, n_nodes, 0.7, with_pieces=True)
    assert np.array_equal(out[0], cm, equal_nan=True)
    pc = out[4].astype(int)
    used = np.isfinite(cm)
    assert np.array_equal(pc != 0, used) and np.all(pc[used] & PIECE_CODES["node"])
    first = np.flatnonzero(pc & PIECE_CODES["first"])
    last = np.flatnonzero(pc & PIECE_CODES["last"])
    assert len(first) == len(last) == n_pieces
    inside = ok & (L >= 10.5) & (L <= 11.5)
    runs, i = [], 0
    while i < len(m):          # the trace's pieces: >= 2 consecutive points inside
        j = i
        while j < len(m) and inside[j]:
            j += 1
        if j - i >= 2:
            runs.append((i, j - 1))
        i = max(j, i + 1)
    assert len(runs) == n_pieces
    if n_pieces:
        assert first[0] == 0 and np.all(first[1:] == last[:-1] + 1) and np.all(last > first)
        np.testing.assert_allclose(cm[first], [m[a] for a, _ in runs], rtol=0, atol=1e-12)
        np.testing.assert_allclose(cm[last], [m[b] for _, b in runs], rtol=0, atol=1e-9)


def test_too_few_slots_for_the_pieces_is_refused(mock11):
    with pytest.raises(ValueError, match="n_nodes"):
        _batch(mock11, DEFAULT_GAMMA_GRID, n_nodes=1)


def test_validity_shortcuts_equal_the_full_inversion(mock4):
    """The tracer decides most points without critical curves; the nodes are the same as with
    the full inversion at every point, and point by point validity agrees on wide scans
    (gamma_in over its whole domain, logMh 9-16.5, random images)."""
    c = get_cosmology(None).params
    from sl_cy.grids import trapezoid_weights

    args = [np.ascontiguousarray(mock4[k][:40]) for k in ("xA", "xB", "logRe", "logM_star_sps_observed", "zl", "zs")]
    common = (GAMMA_WIDE, trapezoid_weights(GAMMA_WIDE), DEFAULT_LOGMH_GRID, 5.0, *c, 1.0, 0.1, 0.1, -1.5, 1.5,
              adaptive_n_nodes(DEFAULT_LOGMH_GRID))
    fast = _tabulate.adaptive_columns_batch(*args, *common)
    exact = _tabulate.adaptive_columns_batch(*args, *common, exact_validity=True)
    assert np.array_equal(fast[0], exact[0], equal_nan=True) and np.array_equal(fast[1], exact[1])
    assert np.array_equal(fast[3], exact[3])
    rng = np.random.default_rng(7)
    mh = np.linspace(9.0, 16.5, 301)
    n_full = n = 0
    for _ in range(40):
        xa = rng.uniform(0.5, 15.0)
        xb = -xa * rng.uniform(0.05, 1.0)
        for g in (0.0, 0.3, 1.0, 1.7, 2.0, 2.4):
            lm, ok_fast, ok_exact, full = _tabulate.point_validity(xa, xb, rng.uniform(-0.3, 1.3), mh, g, 5.0, 0.3,
                                                                   2.0, *c)
            assert np.array_equal(ok_fast, ok_exact)
            n_full += full.sum()
            n += len(mh)
    assert n_full < 0.15 * n      # the shortcut decides almost everywhere (not: gamma_in >= 2, no radial curve)


def test_threads_do_not_change_results(mock4):
    one = _batch(mock4, DEFAULT_GAMMA_GRID, n_threads=1)   # all lenses of the mock
    two = _batch(mock4, DEFAULT_GAMMA_GRID, n_threads=2)
    assert np.array_equal(one[0], two[0], equal_nan=True) and np.array_equal(one[1], two[1])


def test_single_lens_wrapper_and_tabulation_use_the_same_rule(mock4):
    i = 3
    m, w = adaptive_columns(mock4["xA"][i], mock4["xB"][i], mock4["logRe"][i], m_obs=mock4["logM_star_sps_observed"][i],
                            gamma_axis=DEFAULT_GAMMA_GRID, logMh_axis=DEFAULT_LOGMH_GRID, zl=mock4["zl"][i], zs=mock4["zs"][i])
    assert _same((m, w), _ref(mock4, i, DEFAULT_GAMMA_GRID))
    import pandas as pd

    obs = pd.DataFrame(dict(xA=mock4["xA"][:3], xB=mock4["xB"][:3], logRe=mock4["logRe"][:3],
                            logM_star_sps_observed=mock4["logM_star_sps_observed"][:3], magnitude_observedA=24.0,
                            magnitude_observedB=24.5, zl=mock4["zl"][:3], zs=mock4["zs"][:3]))
    # the base rule (the column-step refinement of sharp weight peaks: tests/test_grids.py)
    grids = tabulate_likelihood_grids(obs, DEFAULT_LOGMH_GRID, DEFAULT_GAMMA_GRID, adaptive=True, cache_every=2,
                                      show_progress=False, peak_halvings=0)
    for j, g in enumerate(grids):
        rm, rw = _ref(mock4, j, DEFAULT_GAMMA_GRID)
        n = g.valid.shape[0]                 # a grid keeps the node slots it uses; the rest is padding
        assert np.all(np.isnan(rm[n:])) and np.all(rw[n:] == 0)
        rm, rw = rm[:n], rw[:n]
        assert np.array_equal(g.logMh, rm, equal_nan=True) and np.array_equal(g.wq, rw)
        assert np.array_equal(g.valid == PADDING, np.isnan(rm))


def test_bad_inputs_are_refused():
    g, mh = np.array([1.0]), np.arange(11.0, 15.0, 0.1)
    with pytest.raises(ValueError, match="strictly increasing"):
        adaptive_columns(6.62, -3.07, 0.9, m_obs=11.5, gamma_axis=g, logMh_axis=mh[::-1])
    with pytest.raises(ValueError, match="gamma_in"):
        adaptive_columns(6.62, -3.07, 0.9, m_obs=11.5, gamma_axis=np.array([2.5]), logMh_axis=mh)
    with pytest.raises(ValueError, match="xB"):
        adaptive_columns(6.62, 3.07, 0.9, m_obs=11.5, gamma_axis=g, logMh_axis=mh)
    with pytest.raises(ValueError, match="window"):
        adaptive_columns(6.62, -3.07, 0.9, m_obs=11.5, gamma_axis=g, logMh_axis=mh, window=(1.0, -1.0))
    with pytest.raises(ValueError, match="scalar"):
        adaptive_columns([6.62, 6.0], -3.07, 0.9, m_obs=11.5, gamma_axis=g, logMh_axis=mh)
