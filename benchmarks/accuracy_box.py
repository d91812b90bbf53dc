"""Per-lens quadrature error over the prior box, split by direction and by gamma rule (issue 16 item 1).

eps_i(eta) = log p_i(default grids) - log p_i(finer grids), with three finer rules on the same
lenses: both directions finer (adaptive column step / 8 and gamma step / 8, the reference of
``tests/test_likelihood_accuracy.py``), only the column (logMh) direction finer, only the gamma
direction finer. Table 1 gives max |eps| per box group (the groups of that test: edges, corners,
40 random eta) and per subset of eta (sigma_h and/or sigma_gamma at the lower bound 0.05 of
:data:`sl_cy.population.ETA_BOX`, or neither), so one sees which direction of the quadrature
fails where.

Table 2 tries gamma rules that treat the truncated-normal gamma law exactly (product integration):
from the per-lens column sums G_k (the integral over a gamma column of everything but p(gamma |
eta), i.e. the kernel restricted to the points of gamma node k), log p_i is

    trapezoid   sum_k w_k G_k p(gamma_k | eta)                       (today's kernel)
    hat         int G_lin(gamma) p(gamma | eta) dgamma                G linear between nodes
    loglin      int exp(logG_lin) p dgamma                            log G linear between nodes
    logquad     per cell [gamma_k -+ h/2]: log G quadratic through nodes k-1, k, k+1
    logcubic    per segment: log G cubic through the 4 nearest nodes

each integral done densely (16001 points on [0, 2]: exact to ~1e-9 for these smooth integrands),
against the kernel on the gamma-finer grids (gamma step / 8: its own error is negligible).

Table 3 refines the default rule uniformly (gamma step and/or adaptive column step) against the
same both-finer reference, with the points per lens each costs.

Table 6 is the kernel's eta-adaptive column rule (``LikelihoodKernel.column_rule``, the default
since; Tables 1-5 are the plain rule, ``column_rule = False``): where the halo ridge is narrower
than the node spacing, every segment of a column is cut in k and the eta-independent fields are
interpolated there (cubic in the node index), mixing rules k and k + 1 continuously in eta.

Run:  python benchmarks/accuracy_box.py [--galaxies 40000] [--seed 11] [--lenses 8] [--only-column-rule]

Table 6 recorded (2026-12-01, same 8 lenses, ``--only-column-rule``, one core, load ~1.5 on 2
cores; max |eps| plain -> column rule; "gamma left" = column rule vs gamma-finer grids under the
same rule; points evaluated per lens, mean / max over eta and lenses; plain rule: 1456 / 2530):

  group    subset          n   total (vs both finer)  column (vs column-finer)  gamma left  points
  edges    sigma_h lo      1   0.175  -> 1.1e-4       0.175  -> 1.1e-4          1.3e-4      7137 / 8533
  edges    sigma_gamma lo  1   0.016  -> 0.016        3.7e-4 -> 3.7e-4          0.016       1456 / 2530
  edges    both lo         1   0.129  -> 0.0205       0.125  -> 1.1e-4          0.0205      7137 / 8533
  corners  sigma_h lo      16  1.63   -> 1.63         0.76   -> 0.148           1.63        4582 / 7548
  corners  sigma_gamma lo  16  0.254  -> 0.254        0.259  -> 0.259           0.105       1456 / 2530
  corners  both lo         16  3.11   -> 0.844        3.09   -> 0.432           0.843       4582 / 7548
  corners  neither         16  0.015  -> 0.015        9.5e-3 -> 9.5e-3          0.015       1456 / 2530
  random   (40)                0.913  -> 0.913        0.185  -> 3.1e-3          0.913       1842 / 7569
  near     (3)                 1.1e-4 -> 1.1e-4       1.05e-4 -> 1.05e-4        1.0e-4      1456 / 2530

  Table 6b  Table 3's refinements with the column rule, max |eps| vs both finer (mean points
  evaluated per lens over the group's eta; Table 3 above is the plain rule)
  gamma step  column   edges           corners        random         near
  0.1         x1       0.0205 (5243)   1.63 (3019)    0.91 (1842)    1.1e-4 (1456)
  0.05        x1       2.9e-4 (10239)  0.94 (5895)    0.36 (3570)    8.2e-5 (2842)
  0.025       x1       1.7e-4 (20234)  0.57 (11651)   0.088 (7056)   3.8e-5 (5617)
  0.1         x1/2     0.0205 (3814)   1.63 (3434)    0.91 (2754)    3.7e-5 (2297)
  0.05        x1/2     1.1e-4 (7447)   0.94 (6707)    0.36 (5378)    2.5e-5 (4485)

(8) The column rule removes the halo-ridge aliasing: the sigma_h = 0.05 edge 0.175 -> 1.1e-4,
the column part of the random eta 0.185 -> 3.1e-3, near the posterior nothing changes (rule 1
there: the same sum bit for bit). What is left is the gamma direction (edges: the sigma_gamma =
0.05 rows, 0.016-0.0205; corners 1.63 and random 0.91: wide gamma laws near gamma = 2) and, in
the column direction, corners with alpha_sps = -0.5 and mu_h = 14 (0.26-0.43, at sigma_h = 1 as
well as 0.05: not the halo ridge): there the integrand sits at the faint end of the columns, where
the photometric factor F_phot falls off a cliff within one node (log W = -6.3, -7.0, -27.5, -85
over consecutive nodes of lens 6, gamma = 0.2), which neither the plain rule nor interpolation
between the nodes resolves (forcing finer sub-sampling, smaller zmax, moves it from 0.26 to ~0.5 at sigma_h = 1; 1.25 -> 0.43 at
sigma_h = 0.05); a tabulation-side refinement of such cliffs (as ``peak_halvings`` does for peaks
of W) would be needed. Cost (points: ``LikelihoodKernel.column_rule_of``; CPU time per lens per
eta on the 167 lenses of mock seed 11 / 40000 galaxies, one core, load 2.9-3.0, the kernel of
main bbe4945): near 4.7 us (plain 4.6-4.7: rule 1 costs nothing), random 6.9 (plain 4.5),
corners 16.2 (3.0), edges 35.4 (4.3): 6-7 ns per evaluated point, the expansion included.

Recorded (2026-12-01, mock seed 11, 8 lenses; ~1.5 min on one core at load ~0.6-2 on 2 cores; points per lens:
default 1456, column / 8: 9104, gamma / 8: 11162, both: 69807):

  Table 1  max |eps|   total (vs both finer)   default vs column-finer   default vs gamma-finer
  corners  sigma_h lo (16)        1.63          0.76                      1.63
  corners  sigma_gamma lo (16)    0.25          0.26                      0.105
  corners  both lo (16)           3.11          3.09                      2.17
  corners  neither (16)           0.015         0.0095                    0.015
  edges    sigma_h lo             0.175         0.175                     0.189
  edges    sigma_gamma lo         0.016         3.7e-4                    0.016
  edges    both lo                0.129         0.125                     0.161
  random   (40, none at a bound)  0.91          0.185                     0.91

  Table 2  gamma rules, max |eps| over the 8 lenses (vs the kernel on gamma-finer grids)
  mu_gamma sigma_gamma   trapezoid  hat      loglin   logquad  logcubic
  1.00     0.20 (truth)  1.0e-4     0.034    0.024    2.5e-4   4.1e-4
  1.05     0.23          8.0e-5     0.018    0.024    2.3e-4   3.7e-4
  1.00     0.05          0.016      0.16     0.033    5.6e-4   1.1e-3
  1.80     0.05          0.015      0.073    0.071    5.6e-4   1.5e-3
  0.20     0.05          0.014      1.12     0.024    9.3e-4   1.7e-3
  0.20     1.00          1.5e-3     3.9e-4   0.023    4.2e-4   6.9e-4
  1.80     0.10          6.1e-3     0.045    0.056    3.4e-4   4.3e-4

  Table 2b  the same rules over the box groups (vs both finer)
  group    trapezoid  hat    loglin  logquad  logcubic
  edges    0.175      1.39   0.137   0.168    0.162
  corners  3.11       25.2   3.05    2.98     3.01
  random   0.91       2.18   0.228   0.165    0.155
  near     1.1e-4     0.092  0.029   3.6e-4   5.4e-4

  Table 3  uniform refinement, max |eps| vs both finer
  gamma step  column step  points/lens  edges   corners  random  near posterior
  0.1         x1           1456         0.175   3.11     0.91    1.1e-4
  0.05        x1           2842         0.097   1.81     0.36    8.2e-5
  0.025       x1           5617         0.078   1.97     0.088   3.8e-5
  0.1         x1/2         2297         0.039   1.63     0.91    3.7e-5
  0.1         x1/4         4566         0.021   1.63     0.91    1.2e-5
  0.05        x1/2         4485         0.027   0.94     0.36    2.5e-5
  0.2         x1           681          1.24    5.70     1.60    3.6e-3

Findings. (1) sigma_gamma = 0.05 alone costs 1.6 % (edges) to 25 % (corners), from the gamma
direction. (2) Small sigma_h is not a column-direction error only: the halo factor is a narrow
ridge in z_h = (logMh - c0 - c1 (logM* - alpha - pivot)) / sigma_h, and logM* of a point moves
with gamma at fixed logMh, so the ridge crosses both the columns and the gamma nodes; refining
either direction alone converges slowly (Table 3: corners stay >= 0.9 at 4x the points). (3) The
column sums G(gamma) are strongly curved (d^2 log G / dgamma^2 ~ -8, tails ~30 per unit), so
product rules that interpolate G (hat) or log G (loglin) linearly between gamma nodes 0.1 apart
err by 2-16 %: *worse* than today's trapezoid even at sigma_gamma = 0.05. The trapezoid of the
smooth, decaying product is spectrally accurate near the posterior (1e-4); no local polynomial
product rule on the same nodes matches that; log-quadratic cells are the best trade found
(<= 9.3e-4 at sigma_gamma = 0.05, 2.5e-4 near the posterior: 2.5x today's). (4) But a gamma
product rule alone does not reach the box target (Table 2b: corners still ~3, random 0.16): the
column sums G_k are themselves wrong there. The worst corners all have beta_h = 4 and sigma_h =
0.05: with c1 = beta_h - xi_h beta_R ~ 4 the halo ridge is sigma_h / c1 ~ 0.0125 dex wide in
logM*, while the nodes are ~0.07 dex apart in logM* along a column, so z_h jumps by ~5 per node
and the column sums alias (log G_k jagged from node to node, e.g. -4.6, -4.2, -8.0, 0 over the last
four gamma nodes of lens 4 at (-0.5, 12, 4, 0.05, 1.8, 0.05)). A column-direction product rule
(the halo Gaussian integrated exactly per segment with z_h linear in arc length) is needed first;
it needs the piece boundaries of each column, which the tabulation does not record today (the
pieces of a column are placed in consecutive slots, :func:`sl_cy._tabulate` ``_place_column``),
and nodes are uniform in arc length of (logMh/0.1, logM*/0.1), not in logMh. At corners with a
wide gamma law (e.g. (-0.5, 12, 0, 0.05, 1.8, 1.0)) the lens's own G(gamma) grows by e^11 over the
last gamma segment before gamma = 2 (e-folding ~0.009): there the trapezoid overestimates by ~1.7
in log p and uniform gamma refinement converges slowly (-28.39, -29.08, -29.68, -30.02, -30.14
for gamma steps 0.1 ... 0.00625; the column step does not matter). (5) A gamma step of 0.2 is
35x worse near the posterior (3.6e-3): with today's trapezoid it cannot halve the points.

  Table 4  column product rule prototype (:func:`column_product_rule`), max |eps| vs both finer
  group    trapezoid  z lin   +logquad(gamma)  z quad  +logquad(gamma)
  edges    0.175      0.024   0.0089           0.021   0.0020
  corners  3.11       1.73    0.96             1.62    0.97
  random   0.91       0.93    0.044            0.91    0.064
  near     1.1e-4     6.9e-3  7.1e-3           2.0e-3  2.0e-3

(6) All Gaussian factors exact along the column segments plus log-quadratic gamma cells bring the
edges under 1 % (0.002-0.009) and the random eta to ~5 %, but not the beta_h = 4 corners (~1), and
they cost the near-posterior accuracy (2e-3 to 7e-3 against 1.1e-4 today): the trapezoid on these
nodes is better than any local interpolation of the smooth remainder (log W varies sharply along
a column, the reason for ``peak_halvings``) and of the column's bend (z linear in t: 6.9e-3;
quadratic: 2.0e-3). Only the halo factor exact along the column (the rest log-linear) is worse
still near the posterior (0.10: the observed-mass Gaussian, ~1 sigma per node, is then
interpolated). So product integration on today's nodes trades the posterior accuracy for the box.

  Table 5  aliasing-corrected columns (:func:`column_alias_corrected`), max |eps|
  group    vs both finer: trapezoid / corrected    vs column-finer: trapezoid / corrected
  edges    0.175 / 0.078                           0.175 / 0.080
  corners  3.11  / 1.82                            3.09  / 1.82
  random   0.91  / 0.91                            0.185 / 0.244
  near     1.1e-4 / 9.9e-5                         1.05e-4 / 9.9e-5

(7) Dividing each column sum by the Poisson-summation factor of its integrand (one Gaussian fitted
between two nodes) leaves the posterior untouched (changes log p_i by < 1e-5 there) and halves the
column error at the edges and corners, but a single Gaussian per column is too crude (the column
bends, several factors are narrow, and at small sigma_h the gamma direction aliases as well:
Table 1). It is the one route found that is neutral near the posterior by construction.
"""
import argparse
import itertools
import time

import numpy as np
from scipy import stats
from scipy.integrate import trapezoid
from scipy.special import log_ndtr, logsumexp

from sl_cy import _likelihood
from sl_cy.grids import DEFAULT_GAMMA_GRID, tabulate_likelihood_grids, trapezoid_weights
from sl_cy.likelihood import GAMMA_HI, GAMMA_LO, LikelihoodKernel, _stacked
from sl_cy.mock import run_mock_simulation
from sl_cy.population import ETA_BOX, ETA_NAMES

TRUTH = np.array([0.0, 12.91, 2.04, 0.37, 1.0, 0.2])
LO = np.array([ETA_BOX[n][0] for n in ETA_NAMES])
HI = np.array([ETA_BOX[n][1] for n in ETA_NAMES])
#: about one Laplace width of the ~400-lens default mock on each side of the truth
NEAR = TRUTH + np.array([[0.0] * 6, [0.02, 0.1, 0.1, 0.05, 0.05, 0.03], [-0.02, -0.1, -0.1, -0.05, -0.05, -0.03]])


def box_groups() -> dict:
    """The eta sets of ``tests/test_likelihood_accuracy.py``: edges, corners, 40 random."""
    e = np.repeat(TRUTH[None], 3, axis=0)
    e[0, 3] = LO[3]
    e[1, 5] = LO[5]
    e[2, [3, 5]] = LO[[3, 5]]
    return {"edges": e, "corners": np.array(list(itertools.product(*zip(LO, HI)))),
            "random": LO + (HI - LO) * np.random.default_rng(0).random((40, 6))}


def column_sums(k: LikelihoodKernel, eta) -> np.ndarray:
    """log G_k per lens and gamma node: the kernel on the points of node k only, without p(gamma|eta)
    and without the gamma trapezoid weight (-inf where a lens has no point on node k)."""
    ng = len(k.gamma_axis)
    G = np.full((k.n_lenses, ng), -np.inf)
    cnt_all = np.diff(k.nodes, axis=1)
    kg = np.repeat(np.tile(np.arange(ng), k.n_lenses), cnt_all.ravel())
    for j in range(ng):
        sel = kg == j
        cnt = cnt_all[:, j]
        if cnt.sum() == 0:
            continue
        off = np.concatenate([[0], np.cumsum(cnt)]).astype(np.int64)
        nodes = np.ascontiguousarray(np.stack([np.zeros_like(cnt), cnt], axis=1), dtype=np.int32)
        with np.errstate(all="ignore"):
            G[:, j] = _likelihood.loglike_lenses(
                np.atleast_2d(eta), np.ascontiguousarray(k.L[sel]), np.ascontiguousarray(k.logMh[sel]),
                nodes, np.ascontiguousarray(k.logw0[sel]), off, k.logRe, k.m_obs,
                np.array([0.0]), False, k._model, GAMMA_LO, GAMMA_HI, 1)[0]
    return G - np.log(trapezoid_weights(k.gamma_axis))


def gamma_rules(lG, ax, mu, sigma) -> dict:
    """log p_i by the rules of Table 2 from the column sums lG (n_lens, n_gamma) on the axis ax."""
    x = np.linspace(GAMMA_LO, GAMMA_HI, 16001)
    lz = np.log(stats.norm.cdf((GAMMA_HI - mu) / sigma) - stats.norm.cdf((GAMMA_LO - mu) / sigma))
    lN = stats.norm.logpdf(x, mu, sigma) - lz
    n, h = len(ax), ax[1] - ax[0]
    s = np.clip(np.searchsorted(ax, x, side="right") - 1, 0, n - 2)          # segment of x
    c = np.clip(np.rint((x - ax[0]) / h).astype(int), 1, n - 2)              # cell centre (quadratic)
    s4 = np.clip(s - 1, 0, n - 4)                                            # cubic stencil start
    out = {"trapezoid": logsumexp(lG + np.log(trapezoid_weights(ax)) + stats.norm.logpdf(ax, mu, sigma) - lz, axis=1)}
    rules = {"hat": [], "loglin": [], "logquad": [], "logcubic": []}
    for g in lG:
        t = (x - ax[s]) / h
        lin = np.exp(g[s] - g.max()) * (1 - t) + np.exp(g[s + 1] - g.max()) * t
        rules["hat"].append(g.max() + np.log(trapezoid(lin * np.exp(lN), x)))
        curves = {"loglin": g[s] * (1 - t) + g[s + 1] * t}
        u = (x - ax[c]) / h
        y0, y1, y2 = g[c - 1], g[c], g[c + 1]
        curves["logquad"] = y1 + 0.5 * (y2 - y0) * u + 0.5 * (y2 - 2 * y1 + y0) * u * u
        v = (x - ax[s4]) / h
        ys = [g[s4 + m] for m in range(4)]
        curves["logcubic"] = sum(ys[m] * np.prod([(v - q) / (m - q) for q in range(4) if q != m], axis=0)
                                 for m in range(4))
        for name, li in curves.items():
            m = li.max()
            rules[name].append(m + np.log(trapezoid(np.exp(li - m + lN), x)))
    out.update({k: np.array(v) for k, v in rules.items()})
    return out


def _columns(k: LikelihoodKernel, grids, eta):
    """The default grids' stacked points (n_lens, n_slots, n_gamma) for the column prototypes: valid
    mask, segments between adjacent slots of one piece (chord within 3 % of the column's median
    chord in (logMh / 0.1, logM* / 0.1): the adaptive nodes are uniform in that arc length within a
    piece; piece boundaries are not stored), the residuals z (skew-normal, size, observed mass,
    halo), log W + log p(gamma_k | eta) + log Phi(a z_s) + the normalisations (without the Gaussian
    exponents), and the previous / next segment flags."""
    st = _stacked(grids)
    mu_s, s_s, a_sk, mu_r0, b_r, s_r, xi_h, s_o, piv = k._model
    al, mu_h, b_h, s_h, mu_g, s_g = eta
    nb = np.asarray(st["nbkg_kpc2"], float)
    L, mh, ax = st["logM_star"], st["logMh"], k.gamma_axis
    with np.errstate(all="ignore"):
        w = (2 * np.pi * nb[:, None, None] * st["beta"] * st["detJ"] * st["F_phot"]) * st["wq"]
        ok = (st["valid"] == 0) & np.isfinite(w) & (w > 0) & np.isfinite(L) & np.isfinite(mh)
        ch = np.hypot(np.diff(mh, axis=1) / 0.1, np.diff(L, axis=1) / 0.1)
        med = np.nanmedian(np.where(ok[:, 1:] & ok[:, :-1], ch, np.nan), axis=1, keepdims=True)
        seg = ok[:, 1:] & ok[:, :-1] & (np.abs(ch / med - 1) < 0.03)
        prev, nxt = np.zeros_like(ok), np.zeros_like(ok)
        prev[:, 1:], nxt[:, :-1] = seg, seg
        re, mo = k.logRe[:, None, None], k.m_obs[:, None, None]
        M = L - al
        z = [(M - mu_s) / s_s, (re - (mu_r0 + b_r * (M - piv))) / s_r, (mo - M) / s_o,
             (mh - (mu_h + xi_h * (re - mu_r0)) - (b_h - xi_h * b_r) * (M - piv)) / s_h]
        lz = np.log(stats.norm.cdf((GAMMA_HI - mu_g) / s_g) - stats.norm.cdf((GAMMA_LO - mu_g) / s_g))
        const = (-np.log(s_h) + np.log(2 / s_s) - np.log(s_r) - np.log(s_o) - 2 * np.log(2 * np.pi))
        rest = np.where(ok, np.log(np.where(ok, w, 1.0)) + (stats.norm.logpdf(ax, mu_g, s_g) - lz)
                        + log_ndtr(a_sk * z[0]) + const, np.nan)
    return ok, seg, prev, nxt, z, rest


def column_product_rule(k: LikelihoodKernel, grids, eta, gamma_rule=None, z_order=1, n_t=48) -> np.ndarray:
    """Prototype (numpy) of a column-direction product rule: log p_i with every Gaussian factor
    (halo, skew-normal exponent, size, observed mass) integrated exactly along each column segment
    between adjacent nodes, their residuals z interpolated linearly (``z_order`` 1: the sum of
    squares is a quadratic in t, closed form with Phi) or quadratically (2: follows the bend of the
    column) in the segment parameter t, the rest (log W, log Phi(a z_s), eta-independent factors)
    interpolated quadratically in t through three nodes of the same piece (linearly for a piece of
    two nodes); each segment integral by n_t-point Gauss-Legendre (exact to rounding here).

    Piece boundaries are not stored in the grids: two adjacent valid slots are taken as one piece
    when their chord in (logMh / 0.1, logM* / 0.1) is within 3 % of the column's median chord (the
    adaptive nodes are uniform in that arc length within a piece); a node with a neighbour on one
    side only is a piece end (trapezoid weight h/2). ``gamma_rule``: None sums the columns with
    today's trapezoid in gamma; a name of :func:`gamma_rules` applies that rule to the column sums.
    """
    ok, seg, prev, nxt, z, rest = _columns(k, grids, eta)
    ax, mu_g, s_g = k.gamma_axis, eta[4], eta[5]
    with np.errstate(all="ignore"):
        iso = ok & ~prev & ~nxt
        if gamma_rule is not None:      # the gamma law goes into the rule, not into the columns
            lz = np.log(stats.norm.cdf((GAMMA_HI - mu_g) / s_g) - stats.norm.cdf((GAMMA_LO - mu_g) / s_g))
            rest = rest - (stats.norm.logpdf(ax, mu_g, s_g) - lz)
        rest = rest - np.log(np.where(prev & nxt, 1.0, 0.5))
        r0, r1 = rest[:, :-1], rest[:, 1:]
        rm = np.concatenate([np.full_like(rest[:, :1], np.nan), rest[:, :-2]], axis=1)     # rest[j-1]
        r2 = np.concatenate([rest[:, 2:], np.full_like(rest[:, :1], np.nan)], axis=1)      # rest[j+2]
        back = prev[:, :-1] & np.isfinite(rm)
        fwd = ~back & np.concatenate([seg[:, 1:], np.zeros_like(seg[:, :1])], axis=1) & np.isfinite(r2)
        c1 = np.where(back, 0.5 * (r1 - rm), np.where(fwd, 0.5 * (-3 * r0 + 4 * r1 - r2), r1 - r0))
        c2 = np.where(back, 0.5 * (r1 - 2 * r0 + rm), np.where(fwd, 0.5 * (r0 - 2 * r1 + r2), 0.0))
        xg, wg = np.polynomial.legendre.leggauss(n_t)
        acc = []
        for t, wt in zip(0.5 * (xg + 1), 0.5 * wg):
            q = 0.0
            for a in z:
                a0, a1 = a[:, :-1], a[:, 1:]
                if z_order == 1:
                    q = q + (a0 + (a1 - a0) * t) ** 2
                    continue
                am = np.concatenate([np.full_like(a[:, :1], np.nan), a[:, :-2]], axis=1)
                a2 = np.concatenate([a[:, 2:], np.full_like(a[:, :1], np.nan)], axis=1)
                d1 = np.where(back, 0.5 * (a1 - am), np.where(fwd, 0.5 * (-3 * a0 + 4 * a1 - a2), a1 - a0))
                d2 = np.where(back, 0.5 * (a1 - 2 * a0 + am), np.where(fwd, 0.5 * (a0 - 2 * a1 + a2), 0.0))
                q = q + (a0 + d1 * t + d2 * t * t) ** 2
            acc.append(np.log(wt) + r0 + c1 * t + c2 * t * t - 0.5 * q)
        sv = np.where(seg, logsumexp(np.array(acc), axis=0), -np.inf)
        f_iso = np.where(iso, rest - 0.5 * sum(a * a for a in z), -np.inf)
        col = np.logaddexp(logsumexp(sv, axis=1), logsumexp(f_iso, axis=1))          # (lens, gamma)
    if gamma_rule is None:
        return logsumexp(col, axis=1)
    return gamma_rules(col - np.log(trapezoid_weights(ax)), ax, mu_g, s_g)[gamma_rule]


def column_alias_corrected(k: LikelihoodKernel, grids, eta) -> np.ndarray:
    """Prototype (numpy): today's trapezoid with each column sum divided by the Poisson-summation
    (aliasing) factor of a Gaussian sampled at unit spacing,

        A = 1 + 2 sum_{m=1..5} exp(-2 pi^2 m^2 w^2) cos(2 pi m c),

    where the column's integrand is modelled, between its largest node and the next node of the
    same piece, as one Gaussian in the node index (all residuals z linear there: width w = 1 /
    sqrt(sum dz_i^2) in node steps, centre c = -sum z_i dz_i / sum dz_i^2 from the largest node).
    A = 1 to rounding wherever the integrand is resolved (w >~ 1: exp(-2 pi^2) = 3e-9), so the rule is
    unchanged near the posterior; it only acts where the trapezoid aliases. Piece ends as in
    :func:`column_product_rule`.
    """
    ok, seg, _, _, z, rest = _columns(k, grids, eta)
    with np.errstate(all="ignore"):
        f = np.where(ok, rest - 0.5 * sum(a * a for a in z), -np.inf)
        col = logsumexp(f, axis=1)
        nl, ns, ng = f.shape
        jm = np.argmax(f, axis=1)
        i_, k_ = np.meshgrid(np.arange(nl), np.arange(ng), indexing="ij")
        fwd = (jm < ns - 1) & seg[i_, np.minimum(jm, ns - 2), k_]
        has = fwd | ((jm > 0) & seg[i_, np.maximum(jm - 1, 0), k_])
        j2 = np.where(fwd, jm + 1, jm - 1)
        dz = [a[i_, j2, k_] - a[i_, jm, k_] for a in z]
        s2 = sum(x * x for x in dz)
        c = -sum(a[i_, jm, k_] * x for a, x in zip(z, dz)) / s2
        A = 1.0 + 2 * sum(np.exp(-2 * np.pi ** 2 * m * m / s2) * np.cos(2 * np.pi * m * c) for m in range(1, 6))
        col = col - np.where(has & (A > 0), np.log(np.where(has & (A > 0), A, 1.0)), 0.0)
    return logsumexp(col, axis=1)


def column_rule_table(K: dict) -> None:
    """Table 6: max |eps| of the default grids with the kernel's column rule off (plain) and on,
    against both-finer (total) and column-finer (column part) grids, per box group and subset, and
    the points evaluated per lens (mean / max over eta and lenses); "gamma left": the column rule
    against the gamma-finer grids under the same column rule (what is left in the gamma direction)."""
    print("\nTable 6  eta-adaptive column rule: max |eps| plain -> column rule; points per lens")
    print(f"{'group':8s} {'subset':15s} {'n':>3s} {'total':>21s} {'column':>21s} {'gamma left':>10s} "
          f"{'points mean / max':>18s}")
    k = K["default"]
    for g, E in dict(box_groups(), near=NEAR).items():
        err = {}
        for flag in (False, True):
            k.column_rule = flag
            lp = k.per_lens(E)
            err[flag] = {n: np.abs(lp - K[n].per_lens(E)).max(axis=1) for n in ("both", "column")}
        _, _, pts = k.column_rule_of(E)
        gam = np.abs(k.per_lens(E) - K["gamma"].per_lens(E)).max(axis=1)
        sh, sg = np.isclose(E[:, 3], LO[3]), np.isclose(E[:, 5], LO[5])
        for name, m in (("sigma_h lo", sh & ~sg), ("sigma_gamma lo", sg & ~sh), ("both lo", sh & sg),
                        ("neither", ~sh & ~sg), ("all", np.ones(len(E), bool))):
            if m.any():
                print(f"{g:8s} {name:15s} {m.sum():3d} "
                      + " ".join(f"{err[False][n][m].max():9.2e} -> {err[True][n][m].max():8.2e}" for n in ("both", "column"))
                      + f" {gam[m].max():10.2e} {pts[m].mean():9.0f} / {pts[m].max():6d}")
    k.column_rule = True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--galaxies", type=int, default=40_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--lenses", type=int, default=8)
    ap.add_argument("--only-column-rule", action="store_true", help="Table 6 only")
    a = ap.parse_args()
    t0 = time.perf_counter()
    _, obs = run_mock_simulation(a.galaxies, seed=a.seed, show_progress=False)
    sub = obs.iloc[:a.lenses]
    fine_g = np.round(np.arange(0.0, 2.0 + 1e-9, 0.1 / 8), 10)
    specs = {"default": {}, "both": dict(gamma_grid=fine_g, adaptive_step=1 / 8),
             "column": dict(adaptive_step=1 / 8), "gamma": dict(gamma_grid=fine_g)}
    G = {n: tabulate_likelihood_grids(sub, show_progress=False, **kw) for n, kw in specs.items()}
    K = {n: LikelihoodKernel(g, selection=False) for n, g in G.items()}
    assert np.array_equal(K["default"].gamma_axis, DEFAULT_GAMMA_GRID)
    print(f"{len(sub)} lenses, points/lens: " + ", ".join(f"{n} {v.n_points / v.n_lenses:.0f}" for n, v in K.items())
          + f"  ({time.perf_counter() - t0:.0f} s)")
    column_rule_table(K)
    if a.only_column_rule:
        return
    for k in K.values():                        # Tables 1-5: the plain rule (the references too)
        k.column_rule = False
    print("\nTable 1  max |eps|: total (vs both finer) / column part / gamma part")
    print(f"{'group':8s} {'subset':15s} {'n':>3s} {'total':>9s} {'column':>9s} {'gamma':>9s}")
    for g, E in sorted(box_groups().items()):
        lp = {n: k.per_lens(E) for n, k in K.items()}
        err = {n: np.abs(lp["default"] - lp[n]).max(axis=1) for n in ("both", "column", "gamma")}
        sh, sg = np.isclose(E[:, 3], LO[3]), np.isclose(E[:, 5], LO[5])
        for name, m in (("sigma_h lo", sh & ~sg), ("sigma_gamma lo", sg & ~sh), ("both lo", sh & sg),
                        ("neither", ~sh & ~sg), ("all", np.ones(len(E), bool))):
            if m.any():
                print(f"{g:8s} {name:15s} {m.sum():3d} " + " ".join(f"{err[n][m].max():9.2e}" for n in err))
    print("\nTable 2  gamma rules from the column sums, max |eps| over lenses (vs the kernel on gamma-finer grids)")
    names = ("trapezoid", "hat", "loglin", "logquad", "logcubic")
    print(f"{'mu_gamma':>8s} {'sigma_g':>8s} " + " ".join(f"{n:>10s}" for n in names))
    for mu, sig in ((1.0, 0.2), (1.05, 0.23), (1.0, 0.05), (1.8, 0.05), (0.2, 0.05), (0.2, 1.0), (1.8, 0.1)):
        eta = TRUTH.copy()
        eta[4:] = mu, sig
        ref = K["gamma"].per_lens(eta)
        r = gamma_rules(column_sums(K["default"], eta), K["default"].gamma_axis, mu, sig)
        print(f"{mu:8.2f} {sig:8.2f} " + " ".join(f"{np.abs(r[n] - ref).max():10.2e}" for n in names))
    print("\nTable 2b  the same gamma rules over the box groups, max |eps| vs both finer")
    groups = dict(box_groups(), near=NEAR)
    print(f"{'group':8s} " + " ".join(f"{n:>10s}" for n in names))
    for g, E in groups.items():
        worst = np.zeros(len(names))
        for eta in E:
            ref = K["both"].per_lens(eta)
            r = gamma_rules(column_sums(K["default"], eta), K["default"].gamma_axis, eta[4], eta[5])
            worst = np.maximum(worst, [np.abs(r[n] - ref).max() for n in names])
        print(f"{g:8s} " + " ".join(f"{v:10.2e}" for v in worst))
    print("\nTable 3  uniform refinement, max |eps| vs both finer")
    lp_ref = {n: K["both"].per_lens(E) for n, E in groups.items()}
    print(f"{'gamma step':>10s} {'column':>7s} {'pts/lens':>8s} " + " ".join(f"{n:>9s}" for n in groups))
    refined = []
    for gs, cs in ((0.1, 1), (0.05, 1), (0.025, 1), (0.1, 0.5), (0.1, 0.25), (0.05, 0.5), (0.2, 1)):
        k = LikelihoodKernel(tabulate_likelihood_grids(sub, gamma_grid=np.round(np.arange(0.0, 2.0 + 1e-9, gs), 10),
                                                       adaptive_step=cs, show_progress=False), selection=False)
        k.column_rule = False
        refined.append((gs, cs, k))
        print(f"{gs:10.3f} {cs:7.2f} {k.n_points / k.n_lenses:8.0f} "
              + " ".join(f"{np.abs(k.per_lens(E) - lp_ref[n]).max():9.2e}" for n, E in groups.items()))
    print("\nTable 6b  the same refinements with the eta-adaptive column rule, max |eps| vs both finer "
          "(points per lens: mean evaluated over the group's eta)")
    print(f"{'gamma step':>10s} {'column':>7s} " + " ".join(f"{n:>18s}" for n in groups))
    for gs, cs, k in refined:
        k.column_rule = True
        cells = []
        for n, E in groups.items():
            cells.append(f"{np.abs(k.per_lens(E) - lp_ref[n]).max():9.2e} {k.column_rule_of(E)[2].mean():8.0f}")
        print(f"{gs:10.3f} {cs:7.2f} " + " ".join(cells))
    print("\nTable 4  column product rule prototype (column_product_rule), max |eps| vs both finer")
    print(f"{'group':8s} {'trapezoid':>10s} {'z lin':>10s} {'+logquad':>10s} {'z quad':>10s} {'+logquad':>10s}")
    for g, E in groups.items():
        worst = np.zeros(5)
        for eta in E:
            ref = K["both"].per_lens(eta)
            worst = np.maximum(worst, [np.abs(K["default"].per_lens(eta) - ref).max()]
                               + [np.abs(column_product_rule(K["default"], G["default"], eta, rule, zo) - ref).max()
                                  for zo in (1, 2) for rule in (None, "logquad")])
        print(f"{g:8s} " + " ".join(f"{v:10.2e}" for v in worst))

    print("\nTable 5  aliasing-corrected columns (column_alias_corrected), max |eps|")
    print(f"{'group':8s} {'vs both finer':>14s} {'vs column-finer':>16s}   (trapezoid / corrected)")
    for g, E in groups.items():
        worst = np.zeros(4)
        for eta in E:
            ref, refc, lp = K["both"].per_lens(eta), K["column"].per_lens(eta), K["default"].per_lens(eta)
            cor = column_alias_corrected(K["default"], G["default"], eta)
            worst = np.maximum(worst, [np.abs(lp - ref).max(), np.abs(cor - ref).max(),
                                       np.abs(lp - refc).max(), np.abs(cor - refc).max()])
        print(f"{g:8s} {worst[0]:9.2e} / {worst[1]:9.2e}   {worst[2]:9.2e} / {worst[3]:9.2e}")


if __name__ == "__main__":
    main()
