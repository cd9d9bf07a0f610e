"""The model wrappers build their designs without patsy: check them against patsy and statsmodels' formulas."""

import numpy as np
import pandas as pd
import patsy
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from statsmodels.miscmodels.ordinal_model import OrderedModel

from backpain_analysis import models
from backpain_analysis.models import ModelError


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 400
    d = pd.DataFrame({
        "phase": rng.choice([1, 3], n),
        "age": rng.normal(50, 12, n),
        "rmdq_0m": rng.integers(0, 25, n).astype(float),
        "sex": pd.Categorical(rng.choice(["female", "male"], n)),
        "risk_group": pd.Categorical(rng.choice(["low", "medium", "high"], n), ["low", "medium", "high"], ordered=True),
        "region": rng.choice(["north", "south", "east"], n),  # text: coded with sorted levels
        "smoker": rng.random(n) < 0.3,  # boolean: patsy makes it a factor
        "constant": np.ones(n),
        "practice_id": rng.choice(["P01", "P02", "P03", "P04"], n),
    })
    d["y"] = 0.5 * (d["phase"] == 3) + 0.1 * d["rmdq_0m"] + rng.normal(0, 1, n)
    d["count"] = rng.poisson(np.exp(0.3 + 0.2 * (d["phase"] == 3)), n).astype(float)
    d["event"] = (rng.random(n) < 0.4).astype(float)
    d["change"] = pd.Categorical(rng.choice(["better", "same", "worse"], n), ["better", "same", "worse"], ordered=True)
    return models.add_phase3(d)


CASES = [
    (["rmdq_0m", "age", "sex", "risk_group"], None),
    (["rmdq_0m", "age", "sex", "risk_group"], "risk_group"),
    (["age", "sex", "risk_group", "rmdq_0m"], "sex"),
    (["age", "region", "smoker", "constant"], None),
    (["age", "rmdq_0m"], "age"),
    (["region", "risk_group"], "region"),
]


@pytest.mark.parametrize("covariates,interaction", CASES)
def test_design_matrix_equals_patsy(frame, covariates, interaction):
    data = models._prepare(frame, "y", covariates)
    x, names = models._design_matrix(data, models._model_terms(data, covariates, interaction))
    _, expected = patsy.dmatrices(models._formula("y", data, covariates, interaction), data, return_type="dataframe")
    assert names == list(expected.columns)
    np.testing.assert_array_equal(x, expected.to_numpy())


def test_design_matrix_with_the_practice_term_equals_patsy(frame):
    data = models._prepare(frame, "y", ["age", "sex"], extra=["practice_id"])
    data = data.assign(_practice=pd.Categorical(data["practice_id"]))
    x, names = models._design_matrix(data, [*models._model_terms(data, ["age", "sex"]), ("_practice",)])
    _, expected = patsy.dmatrices("y ~ phase3 + age + sex + _practice", data, return_type="dataframe")
    assert names == list(expected.columns)
    np.testing.assert_array_equal(x, expected.to_numpy())


def test_unsupported_terms_are_an_error_not_a_wrong_design(frame):
    data = models._prepare(frame, "y", ["sex", "risk_group"])
    with pytest.raises(ModelError, match="categorical factor"):
        models._design_matrix(data, [("phase3",), ("sex", "risk_group")])
    with pytest.raises(ModelError, match="categorical factor"):  # no main effect of phase3: patsy would go full rank
        models._design_matrix(data, [("phase3", "sex")])


def _same_fit(fit, expected):
    assert list(fit.params.index) == list(expected.params.index)
    np.testing.assert_allclose(fit.params, expected.params, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(fit.bse, expected.bse, rtol=1e-6)
    assert fit.model.data.frame.index.equals(expected.model.data.frame.index)


COVS = ["rmdq_0m", "age", "sex", "risk_group", "region"]


def test_ols_equals_the_formula_fit(frame):
    fit = models.fit_ols(frame, "y", COVS, interaction="risk_group")
    data = models._prepare(frame, "y", COVS)
    _same_fit(fit, smf.ols(fit.model.formula, data=data).fit())
    robust = models.fit_ols(frame, "y", COVS, cov_type="HC3")
    _same_fit(robust, smf.ols(robust.model.formula, data=data).fit(cov_type="HC3", use_t=True))


def test_logistic_and_negative_binomial_equal_the_formula_fits(frame):
    fit = models.fit_logistic(frame, "event", COVS)
    data = models._prepare(frame, "event", COVS)
    _same_fit(fit, smf.glm(fit.model.formula, data=data, family=sm.families.Binomial()).fit())
    nb = models.fit_negative_binomial(frame, "count", COVS)
    data = models._prepare(frame, "count", COVS)
    alpha = smf.negativebinomial(nb.model.formula, data=data).fit(disp=0, maxiter=200).params["alpha"]
    assert nb.nb_alpha == pytest.approx(alpha, rel=1e-6)
    expected = smf.glm(nb.model.formula, data=data, family=sm.families.NegativeBinomial(alpha=alpha)).fit(cov_type="HC0")
    _same_fit(nb, expected)


def test_ordinal_equals_the_formula_model_at_the_same_optimum(frame):
    fit = models.fit_ordinal(frame, "change", COVS)
    data = models._prepare(frame, "change", COVS)
    model = OrderedModel.from_formula(fit.model.formula, data=data, distr="logit")
    assert list(model.exog_names) == list(fit.params.index)
    # statsmodels' own log-likelihood and numerical Hessian at our optimum
    np.testing.assert_allclose(model.loglike(fit.params.to_numpy()), fit.llf, rtol=1e-12)
    cov = np.linalg.inv(-model.hessian(fit.params.to_numpy()))
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), fit.bse, rtol=1e-4)


def test_varies_is_nunique_above_one():
    """models._varies (which covariates enter a model) against pandas' nunique, missing values included."""
    from backpain_analysis.models import _varies

    cases = [pd.Series([1.0, np.nan, 1.0]), pd.Series([1.0, 2.0]), pd.Series([np.nan]), pd.Series([], dtype=float),
             pd.Series(pd.Categorical(["a", None, "a"])), pd.Series(pd.Categorical(["a", "b"])),
             pd.Series(pd.Categorical(["b", "b"], categories=["a", "b"])), pd.Series([1, 1]), pd.Series([1, 2]),
             pd.Series([True, False]), pd.Series(["x", "x"]), pd.Series(["x", "y"])]
    for s in cases:
        assert _varies(s) == (s.nunique() > 1), s
