"""Users' own catalogues: units, aliases, file formats and clear errors by column and row."""
import numpy as np
import pandas as pd
import pytest

import sl_cy
from sl_cy.catalogue import read_catalogue
from sl_cy.io import atomic_h5, write_dataframe


def _cat():
    return pd.DataFrame(dict(xA=[1.5, 1.2, -0.9], xB=[-0.7, -0.9, 1.1], logRe=[0.9, 0.8, 0.7],
                             logM_star_sps_observed=[11.5, 11.3, 11.2], magnitude_observedA=[24.0, 24.5, 25.0],
                             magnitude_observedB=[24.8, 25.1, 25.3], zl=[0.3, 0.4, 0.5], zs=[2.0, 1.5, 2.5]))


def test_csv_in_arcsec_is_converted_per_lens(tmp_path):
    p = tmp_path / "lenses.csv"
    _cat().to_csv(p, index=False)
    df = read_catalogue(p, unit="arcsec")
    cat = _cat()
    for i in range(3):
        s = np.sign(cat.xA[i])
        assert df.xA.iloc[i] == pytest.approx(sl_cy.cosmology.arcsec_to_kpc(s * cat.xA[i], cat.zl[i]), rel=1e-14)
        assert df.xB.iloc[i] == pytest.approx(sl_cy.cosmology.arcsec_to_kpc(s * cat.xB[i], cat.zl[i]), rel=1e-14)
    assert (df.xA > 0).all() and (df.xB < 0).all()
    assert df.index.tolist() == [1, 2, 3]
    kpc = read_catalogue(p, unit="kpc")
    assert kpc.xA.iloc[0] == 1.5


def test_aliases_hdf5_and_logRe_in_arcsec(tmp_path):
    cat = _cat().rename(columns=dict(magnitude_observedA="mA", magnitude_observedB="mB", logRe="logRe_arcsec"))
    p = tmp_path / "lenses.h5"
    with atomic_h5(p) as f:
        write_dataframe(f, "observed", cat)
    df = read_catalogue(p, zl=0.3)
    assert df.magnitude_observedA.tolist() == [24.0, 24.5, 25.0]
    assert df.logRe.iloc[1] == pytest.approx(np.log10(sl_cy.cosmology.arcsec_to_kpc(10 ** 0.8, 0.4)), rel=1e-14)


def test_defaults_for_missing_redshift_columns():
    df = read_catalogue(_cat().drop(columns=["zl", "zs"]), zl=0.35, zs=1.8)
    assert df.zl.tolist() == [0.35] * 3 and df.zs.tolist() == [1.8] * 3


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.rename(columns={"logRe": "log_Re"}), r"missing column\(s\) \['logRe'\].*log_Re"),
    (lambda d: d.assign(magnitude_observedB=["24.8", "oops", "25.3"]), "magnitude_observedB.*row 2"),
    (lambda d: d.assign(xB=[0.7, -0.9, 1.1]), "row 1.*opposite sides"),
    (lambda d: d.assign(zs=[2.0, 0.2, 2.5]), "row 2.*zl < zs"),
])
def test_bad_catalogues_are_reported_by_name_and_row(tmp_path, mutate, match):
    p = tmp_path / "bad.csv"
    mutate(_cat()).to_csv(p, index=False)
    with pytest.raises(ValueError, match=match):
        read_catalogue(p)


def test_bad_unit_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unit"):
        read_catalogue(_cat(), unit="deg")
    with pytest.raises(FileNotFoundError):
        read_catalogue(tmp_path / "none.csv")
