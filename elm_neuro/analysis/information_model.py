r"""Closed-form information model of the fixed-budget trade-off (docs/design.md §11).

Why a network of ``N`` neurons with ``k_e`` internal parameters and ``k_c`` synapses each has an
optimal size at a fixed budget ``P``: per-neuron signal quality saturates, and neurons share
noise, so both "more neurons" and "more complex neurons" run into diminishing returns. The
full derivation is in ``docs/information_model.md``; in short:

1. **One neuron.** Neuron ``i`` carries the task signal ``S`` with gain ``g`` and noise
   ``xi_i`` of variance ``sigma^2``: ``r_i = g S + xi_i``. Its signal-to-noise ratio grows with
   the resources it owns and saturates (Hill / Michaelis-Menten form)::

       SNR_1(k_e, k_c) = s * (k_e / (k_e + a_e))^g_e * (k_c / (k_c + a_c))^g_c

   ``s`` is the SNR of an infinitely expressive, infinitely connected neuron; ``a_e``, ``a_c``
   are half-saturation constants and ``g_e``, ``g_c`` the steepness of saturation.

2. **A population with information-limiting correlations.** Noise is shared with correlation
   ``c``: ``Cov(xi) = sigma^2 [(1 - c) I + c 1 1^T]`` (Moreno-Bote et al. 2014). The optimal
   linear readout (Fisher discriminant) reaches
   ``SNR_pop = g^2 1^T Cov^-1 1 = g^2 N / (sigma^2 (1 + (N - 1) c))``, i.e.::

       SNR_pop = N * SNR_1 / (1 + (N - 1) c)

   using ``Cov^-1 1 = 1 / (sigma^2 (1 + (N - 1) c)) * 1`` (``1`` is an eigenvector).

3. **Information and loss.** For a Gaussian channel ``I = 0.5 * log2(1 + SNR_pop)`` bits; the
   readout cannot know more than the label holds, ``I <= H(Y)``. The cross-entropy of an ideal
   decoder is the conditional entropy ``H(Y | readout) = H(Y) - I``, so the predicted loss in
   bits is ``L = H(Y) - min(I, H(Y))``.

4. **Accuracy (classification).** We map information to accuracy with a calibrated monotone
   curve, ``acc = chance + (1 - chance) * (I / H(Y))^q``, ``q > 0`` fitted (``q = 1`` linear):
   zero information gives the best label-blind guess (``chance``: the majority-class
   probability, 0.10 for SHD-Adding), full information gives 1. (Fano's inequality
   ``H(Y|X) <= h(P_e) + P_e log2(C - 1)`` only bounds the error from one side, so it does not
   give a point prediction; the calibrated map does, at the price of one parameter.)

Limits
    * more neurons stop helping: ``N -> inf`` gives ``SNR_pop -> SNR_1 / c`` (for ``c > 0``);
    * more complex neurons stop helping: ``k_e -> inf`` gives ``SNR_1 -> s (k_c/(k_c+a_c))^g_c``.

Optimum at a budget
    With the affine budget ``P = N (k_c + k_e) + P_fixed`` (the ELM Network's form, docs/design.md §3;
    write ``B = P - P_fixed``), ``N = B / (k_c + k_e)``. Since ``I`` grows with ``SNR_pop``, the
    optimum maximises ``log SNR_pop = log N - log(1 + (N-1) c) + log SNR_1``. Setting the
    derivative in ``k_e`` to zero (``dN/dk_e = -N / (k_c + k_e)``) gives::

        g_e a_e / (k_e (k_e + a_e)) = (1 - c) / ((k_c + k_e)(1 - c) + B c)

    (the marginal gain of a more expressive neuron equals the marginal loss of having fewer,
    partly redundant, neurons). For large ``B`` the right side is ``~ (1 - c) / (B c)`` and
    ``k_e >> a_e``, so::

        k_e* ~ sqrt(g_e a_e c B / (1 - c)),    N* ~ B / (k_c + k_e*) ~ sqrt((1 - c) B / (g_e a_e c))

    both grow like ``P^(1/2)``. Along this path ``1/SNR_pop* = (c + (1-c)/N*) / SNR_1*``
    approaches ``c / s'`` (``s' = s (k_c/(k_c+a_c))^g_c``) with a deficit ``~ B^(-1/2)``, hence
    the frontier loss follows ``L*(P) ~ L_inf + A P^(-1/2)`` with
    ``L_inf = H(Y) - 0.5 log2(1 + s'/c)`` (as long as the cap ``H(Y)`` is not reached).
    A general budget ``p_of(n, k_e, k_c)`` (increasing in ``n``) is handled numerically.

Fitting
    Parameters are fitted by :func:`scipy.optimize.least_squares` on the residuals
    ``prediction - observation`` (losses in bits, or accuracies). Positive parameters are
    log-parameterised (``s = exp(theta_s)`` ...) and ``c`` is logit-parameterised
    (``c = 1 / (1 + exp(-theta_c))``), so the optimiser is unconstrained. Several starting
    points are tried, the lowest cost kept. When ``k_c`` does not vary in the data, ``a_c`` and
    ``g_c`` are not identifiable and are fixed to ``a_c = 0, g_c = 1`` (connection factor 1;
    ``s`` then absorbs it). Uncertainty: Jacobian-based standard errors
    (``Cov(theta) = s^2 (J^T J)^-1``, ``s^2 = RSS / (n - n_free)``) propagated by the delta
    method (``se(x) = x se(theta)`` for log-parameters, ``c (1 - c) se(theta_c)`` for ``c``),
    and optionally bootstrap percentile intervals from refits on rows resampled with
    replacement (seeded).

Validation out of sample
    An in-sample R^2 says little when a handful of configurations meet five or more free
    parameters. :func:`leave_one_budget_out` fits the model on every budget but one and predicts
    the held-out budget's runs: the RMSE per held-out budget (in the fitted quantity: accuracy,
    or bits for a loss) and the range of every fitted parameter over the folds tell whether the
    model predicts a budget it has not seen and whether its parameters mean anything.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import numpy as np
from scipy import optimize

from elm_neuro import defaults as D
from elm_neuro.analysis import sweep_table as st
from elm_neuro.analysis._plotting import check_png_path, new_figure, save_figure, set_log_axis

PARAM_NAMES = ("s", "a_e", "a_c", "g_e", "g_c", "c")
_THETA_CLIP = 40.0


@dataclass(frozen=True)
class InfoModelParams:
    """Parameters of the model (module docstring). ``a_c = 0`` switches the connection factor off."""

    s: float
    a_e: float
    a_c: float = 0.0
    g_e: float = 1.0
    g_c: float = 1.0
    c: float = 0.0

    def __post_init__(self) -> None:
        for name in PARAM_NAMES:
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if self.s <= 0:
            raise ValueError(f"s must be > 0, got {self.s}")
        for name in ("a_e", "a_c", "g_e", "g_c"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.c <= 1.0:
            raise ValueError(f"c must lie in [0, 1], got {self.c}")

    def as_dict(self) -> dict:
        return {k: float(getattr(self, k)) for k in PARAM_NAMES}

    def replace(self, **kw) -> "InfoModelParams":
        return dataclasses.replace(self, **kw)


# --------------------------------------------------------------------------- forward model
def _positive(name: str, x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ValueError(f"{name} must be finite and > 0")
    return x


def _check_params(params) -> InfoModelParams:
    if not isinstance(params, InfoModelParams):
        raise ValueError(f"params must be an InfoModelParams, got {type(params).__name__}")
    return params


def _check_h(h_y, allow_none: bool = True) -> Optional[float]:
    if h_y is None and allow_none:
        return None
    if not isinstance(h_y, (int, float, np.floating)) or not math.isfinite(h_y) or h_y <= 0:
        raise ValueError(f"h_y (label entropy in bits) must be a finite number > 0, got {h_y!r}")
    return float(h_y)


def _sat(k: np.ndarray, a: float, g: float) -> np.ndarray:
    """``(k / (k + a))^g`` (1 when ``a = 0``)."""
    return (k / (k + a)) ** g


def snr_single(k_e, k_c, params: InfoModelParams) -> np.ndarray:
    """``SNR_1 = s (k_e/(k_e+a_e))^g_e (k_c/(k_c+a_c))^g_c`` (broadcasting)."""
    params = _check_params(params)
    k_e, k_c = _positive("k_e", k_e), _positive("k_c", k_c)
    return params.s * _sat(k_e, params.a_e, params.g_e) * _sat(k_c, params.a_c, params.g_c)


def snr_population(n, k_e, k_c, params: InfoModelParams) -> np.ndarray:
    """``SNR_pop = N SNR_1 / (1 + (N - 1) c)`` for ``N >= 1`` (broadcasting)."""
    n = np.asarray(n, dtype=float)
    if not np.all(np.isfinite(n)) or np.any(n < 1):
        raise ValueError("n must be finite and >= 1")
    return n * snr_single(k_e, k_c, params) / (1.0 + (n - 1.0) * params.c)


def information(n, k_e, k_c, params: InfoModelParams, h_y: Optional[float] = None) -> np.ndarray:
    """``I = 0.5 log2(1 + SNR_pop)`` bits, capped at ``h_y`` when given."""
    i = 0.5 * np.log2(1.0 + snr_population(n, k_e, k_c, params))
    h = _check_h(h_y)
    return i if h is None else np.minimum(i, h)


def predicted_loss(n, k_e, k_c, params: InfoModelParams, h_y: float) -> np.ndarray:
    """``L = H(Y) - min(I, H(Y))`` in bits."""
    h = _check_h(h_y, allow_none=False)
    return h - information(n, k_e, k_c, params, h)


def accuracy_from_information(info, h_y: float, chance: float, q: float = 1.0) -> np.ndarray:
    """``acc = chance + (1 - chance) (min(I, H)/H)^q`` (module docstring, point 4)."""
    h = _check_h(h_y, allow_none=False)
    if not (isinstance(chance, (int, float)) and 0 <= chance < 1):
        raise ValueError(f"chance must lie in [0, 1), got {chance!r}")
    if not (isinstance(q, (int, float, np.floating)) and math.isfinite(q) and q > 0):
        raise ValueError(f"q must be a finite number > 0, got {q!r}")
    info = np.asarray(info, dtype=float)
    if np.any(info < 0):
        raise ValueError("info must be >= 0")
    frac = np.minimum(info, h) / h
    return chance + (1.0 - chance) * frac ** q


def predicted_accuracy(n, k_e, k_c, params: InfoModelParams, h_y: float, chance: float, q: float = 1.0) -> np.ndarray:
    """Accuracy predicted through :func:`accuracy_from_information`."""
    return accuracy_from_information(information(n, k_e, k_c, params, h_y), h_y, chance, q)


def label_entropy(probs) -> float:
    """``H(Y) = -sum p log2 p`` in bits of a label distribution (normalised here)."""
    p = np.asarray(probs, dtype=float).ravel()
    if p.size == 0 or np.any(p < 0) or not np.all(np.isfinite(p)) or p.sum() <= 0:
        raise ValueError("probs must be a non-empty array of finite non-negative numbers with a positive sum")
    p = p / p.sum()
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


def adding_label_probs(n_digits: int = 10) -> np.ndarray:
    """Distribution of ``d1 + d2`` for two independent uniform digits (SHD-Adding: triangular
    over ``2 n_digits - 1`` classes, ``H = 4.03`` bits and majority 0.10 for 10 digits)."""
    if not isinstance(n_digits, int) or n_digits < 1:
        raise ValueError(f"n_digits must be an integer >= 1, got {n_digits!r}")
    s = np.arange(2 * n_digits - 1)
    return np.minimum(s + 1, 2 * n_digits - 1 - s) / n_digits**2


def redundancy_limit(k_e, k_c, params: InfoModelParams) -> np.ndarray:
    """``lim_{N->inf} SNR_pop = SNR_1 / c`` (inf when ``c = 0``)."""
    snr1 = snr_single(k_e, k_c, params)
    with np.errstate(divide="ignore"):
        return snr1 / params.c if params.c > 0 else np.full_like(snr1, np.inf)


def saturation_limit(k_c, params: InfoModelParams) -> np.ndarray:
    """``lim_{k_e->inf} SNR_1 = s (k_c/(k_c+a_c))^g_c``."""
    params = _check_params(params)
    return params.s * _sat(_positive("k_c", k_c), params.a_c, params.g_c)


# --------------------------------------------------------------------------- fitting
@dataclass
class InfoModelFit:
    """Result of :func:`fit_information_model`."""

    params: InfoModelParams
    q: Optional[float]  # accuracy-map exponent (kind "accuracy")
    kind: str  # "loss" (bits) or "accuracy"
    h_y: float
    chance: Optional[float]
    stderr: dict  # name -> Jacobian-based standard error (0 for fixed parameters)
    ci: dict  # name -> bootstrap percentile interval (empty without bootstrap)
    r2: float
    rmse: float
    residuals: np.ndarray  # prediction - observation
    fitted: np.ndarray
    n: np.ndarray
    k_e: np.ndarray
    k_c: np.ndarray
    target: np.ndarray
    fixed: dict  # parameters held fixed
    free: tuple  # names of fitted parameters
    cost: float
    bootstrap: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def predict(self, n, k_e, k_c) -> np.ndarray:
        """Prediction in the fitted quantity (loss in bits, or accuracy)."""
        if self.kind == "loss":
            return predicted_loss(n, k_e, k_c, self.params, self.h_y)
        return predicted_accuracy(n, k_e, k_c, self.params, self.h_y, self.chance, self.q)

    def information(self, n, k_e, k_c) -> np.ndarray:
        return information(n, k_e, k_c, self.params, self.h_y)

    def summary(self) -> dict:
        """Flat dict: every parameter with its standard error and interval, R^2, RMSE."""
        out = {}
        names = PARAM_NAMES + (("q",) if self.kind == "accuracy" else ())
        vals = self.params.as_dict()
        if self.q is not None:
            vals["q"] = self.q
        for k in names:
            out[k] = vals[k]
            out[k + "_se"] = self.stderr.get(k, float("nan"))
            if k in self.ci:
                out[k + "_lo"], out[k + "_hi"] = self.ci[k]
        out.update(r2=self.r2, rmse=self.rmse, n_points=int(self.target.size), kind=self.kind)
        return out


def _to_theta(name: str, v: float) -> float:
    if name == "c":
        v = min(max(v, 1e-9), 1 - 1e-9)
        return math.log(v / (1 - v))
    return math.log(max(v, 1e-300))


def _from_theta(name: str, th: float) -> float:
    th = float(np.clip(th, -_THETA_CLIP, _THETA_CLIP))
    if name == "c":
        return 1.0 / (1.0 + math.exp(-th))
    return math.exp(th)


def _dnat_dtheta(name: str, v: float) -> float:
    return v * (1 - v) if name == "c" else v


def _model_values(vals: dict, kind, n, k_e, k_c, h_y, chance):
    params = InfoModelParams(**{k: vals[k] for k in PARAM_NAMES})
    if kind == "loss":
        return predicted_loss(n, k_e, k_c, params, h_y)
    return predicted_accuracy(n, k_e, k_c, params, h_y, chance, vals["q"])


def _observed_snr(kind, target, h_y, chance) -> np.ndarray:
    if kind == "loss":
        info = np.clip(h_y - target, 1e-3, h_y)
    else:
        info = np.clip((target - chance) / (1 - chance), 1e-3, 1.0) * h_y
    return 2.0 ** (2.0 * info) - 1.0


def fit_information_model(
    n,
    k_e,
    k_c,
    target,
    h_y: float,
    kind: str = "loss",
    chance: Optional[float] = None,
    fix: Optional[dict] = None,
    n_boot: int = 0,
    seed: int = 0,
    ci_level: float = D.CI_LEVEL,
) -> InfoModelFit:
    """Fit ``(s, a_e, a_c, g_e, g_c, c)`` (and ``q`` for accuracies) by least squares.

    Args:
        n, k_e, k_c: budget coordinates of each measurement (``n >= 1``, ``k_e, k_c > 0``).
        target: losses in bits (``kind="loss"``; e.g. BPC, or cross-entropy in nats / ln 2) or
            accuracies in [0, 1] (``kind="accuracy"``).
        h_y: label entropy ``H(Y)`` in bits (:func:`label_entropy`).
        chance: accuracy at zero information (required for ``kind="accuracy"``).
        fix: parameters held fixed, e.g. ``{"g_e": 1.0}`` or ``{"q": 1.0}``. When ``k_c`` takes a
            single value, ``a_c = 0, g_c = 1`` are fixed unless given here.
        n_boot: bootstrap refits on resampled rows (0: none); ``seed`` seeds them.
    """
    if kind not in ("loss", "accuracy"):
        raise ValueError(f"kind must be 'loss' or 'accuracy', got {kind!r}")
    h_y = _check_h(h_y, allow_none=False)
    n = np.asarray(n, dtype=float)
    k_e, k_c, target = (np.asarray(v, dtype=float) for v in (k_e, k_c, target))
    shapes = {v.shape for v in (n, k_e, k_c, target)}
    if len(shapes) != 1 or n.ndim != 1:
        raise ValueError(f"n, k_e, k_c and target must be 1-D of equal length, got shapes "
                         f"{[v.shape for v in (n, k_e, k_c, target)]}")
    if not np.all(np.isfinite(n)) or np.any(n < 1):
        raise ValueError("n must be finite and >= 1")
    _positive("k_e", k_e)
    _positive("k_c", k_c)
    if not np.all(np.isfinite(target)):
        raise ValueError("target must be finite")
    if kind == "accuracy":
        if chance is None or not (0 <= chance < 1):
            raise ValueError(f"chance must lie in [0, 1) for kind='accuracy', got {chance!r}")
        if np.any((target < 0) | (target > 1)):
            raise ValueError("target accuracies must lie in [0, 1]")
    all_names = PARAM_NAMES + (("q",) if kind == "accuracy" else ())
    fix = dict(fix or {})
    unknown = sorted(set(fix) - set(all_names))
    if unknown:
        raise ValueError(f"fix: unknown parameter(s) {unknown}; allowed {list(all_names)}")
    if np.unique(k_c).size == 1:
        fix.setdefault("a_c", 0.0)
        fix.setdefault("g_c", 1.0)
    free = tuple(k for k in all_names if k not in fix)
    n_free = len(free)
    if target.size < n_free:
        raise ValueError(f"target: need at least {n_free} points for {n_free} free parameters, got {target.size}")

    def values(theta) -> dict:
        vals = dict(fix)
        vals.update({k: _from_theta(k, t) for k, t in zip(free, theta)})
        return vals

    def make_resid(idx):
        def resid(theta):
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                r = _model_values(values(theta), kind, n[idx], k_e[idx], k_c[idx], h_y, chance) - target[idx]
            return np.nan_to_num(r, nan=1e6, posinf=1e6, neginf=-1e6)
        return resid

    # Starting points: a small grid over c, a_e and g_e; s matched to the best observed SNR.
    snr_obs = _observed_snr(kind, target, h_y, chance)
    j = int(np.argmax(snr_obs))
    med_ke = float(np.median(k_e))
    med_kc = float(np.median(k_c))
    starts = []
    for c0 in (0.01, 0.1, 0.4):
        for ae0 in (0.3 * med_ke, 3.0 * med_ke):
            for ge0 in (1.0, 2.0):
                v0 = {"a_e": ae0, "g_e": ge0, "a_c": med_kc, "g_c": 1.0, "c": c0, "q": 1.0}
                v0.update(fix)
                f = _sat(k_e[j], v0["a_e"], v0["g_e"]) * _sat(k_c[j], v0["a_c"], v0["g_c"])
                v0["s"] = fix.get("s", max(snr_obs[j] * (1 + (n[j] - 1) * v0["c"]) / (n[j] * f), 1e-6))
                starts.append(np.array([_to_theta(k, v0[k]) for k in free]))
    all_idx = np.arange(target.size)
    resid = make_resid(all_idx)
    best = None
    for th0 in starts:
        res = optimize.least_squares(resid, th0, method="trf", x_scale="jac", max_nfev=400 * (n_free + 1))
        if best is None or res.cost < best.cost:
            best = res
    theta = best.x
    vals = values(theta)
    fitted = _model_values(vals, kind, n, k_e, k_c, h_y, chance)
    residuals = fitted - target
    ss_res = float(np.sum(residuals**2))
    ss_tot = float(np.sum((target - target.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    stderr = {k: 0.0 for k in fix}
    dof = target.size - n_free
    if dof > 0:
        try:
            cov = np.linalg.pinv(best.jac.T @ best.jac) * (ss_res / dof)
            for i, k in enumerate(free):
                stderr[k] = float(abs(_dnat_dtheta(k, vals[k])) * math.sqrt(max(cov[i, i], 0.0)))
        except np.linalg.LinAlgError:
            stderr.update({k: float("nan") for k in free})
    else:
        stderr.update({k: float("nan") for k in free})
    boots, ci = [], {}
    if n_boot:
        if not (isinstance(n_boot, int) and n_boot > 0):
            raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
        rng = np.random.default_rng(seed)
        for _ in range(n_boot):
            idx = rng.integers(0, target.size, target.size)
            r = optimize.least_squares(make_resid(idx), theta, method="trf", x_scale="jac", max_nfev=200 * (n_free + 1))
            bv = values(r.x)
            boots.append([bv[k] for k in free])
        boots = np.array(boots)
        qs = (100 * (1 - ci_level) / 2, 100 * (1 + ci_level) / 2)
        for i, k in enumerate(free):
            lo, hi = np.percentile(boots[:, i], qs)
            ci[k] = (float(lo), float(hi))
    params = InfoModelParams(**{k: vals[k] for k in PARAM_NAMES})
    return InfoModelFit(
        params=params, q=vals.get("q") if kind == "accuracy" else None, kind=kind, h_y=h_y, chance=chance,
        stderr=stderr, ci=ci, r2=r2, rmse=math.sqrt(ss_res / target.size), residuals=residuals, fitted=fitted,
        n=n, k_e=k_e, k_c=k_c, target=target, fixed=fix, free=free, cost=float(best.cost),
        bootstrap=np.asarray(boots, dtype=float).reshape(-1, n_free) if n_boot else np.zeros((0, n_free)),
    )


def fit_information_model_rows(
    rows: Sequence[dict],
    metric: str,
    h_y: float,
    kind: Optional[str] = None,
    chance: Optional[float] = None,
    to_bits: float = 1.0,
    fix: Optional[dict] = None,
    n_boot: int = 0,
    seed: int = 0,
) -> InfoModelFit:
    """:func:`fit_information_model` on sweep-table rows (columns ``n``, ``k_e``, ``k_c``, metric).

    ``kind`` defaults to ``accuracy`` for metrics named ``*acc*`` and ``loss`` otherwise; loss
    values are multiplied by ``to_bits`` (``1 / ln 2`` for a cross-entropy in nats). Rows with a
    missing value are skipped; per-seed rows are used as they are (each seed one point).
    """
    st._check_rows(rows)
    kind = kind or ("accuracy" if st.higher_is_better(metric) else "loss")
    cols = {k: st.column(rows, k) for k in ("n", "k_e", "k_c", metric)}
    ok = np.all([np.isfinite(v) for v in cols.values()], axis=0)
    if not ok.any():
        raise ValueError(f"rows: no row has finite n, k_e, k_c and {metric!r}")
    tgt = cols[metric][ok] * (to_bits if kind == "loss" else 1.0)
    return fit_information_model(cols["n"][ok], cols["k_e"][ok], cols["k_c"][ok], tgt, h_y, kind=kind,
                                 chance=chance, fix=fix, n_boot=n_boot, seed=seed)


# --------------------------------------------------------------------------- out-of-sample check
@dataclass
class BudgetHoldout:
    """Leave-one-budget-out validation (:func:`leave_one_budget_out`): one fold per budget."""

    budgets: np.ndarray  # the held-out budget of each fold
    rmse: np.ndarray  # RMSE of the held-out budget's points, in the fitted quantity
    bias: np.ndarray  # mean (prediction - observation) over the held-out points
    n_points: np.ndarray  # held-out points per fold
    params: list  # per fold: the fitted parameters (PARAM_NAMES, and q for accuracies)
    predicted: list  # per fold: predictions at the held-out points
    observed: list  # per fold: the held-out observations
    kind: str  # "loss" (bits) or "accuracy"
    free: tuple  # the parameters fitted in every fold

    @property
    def rmse_pooled(self) -> float:
        """RMSE over every held-out point of every fold."""
        err = np.concatenate([p - o for p, o in zip(self.predicted, self.observed)])
        return float(np.sqrt(np.mean(err ** 2)))

    def param_range(self) -> dict:
        """``name -> (min, max)`` of each free parameter over the folds (the fit's stability)."""
        return {k: (float(min(p[k] for p in self.params)), float(max(p[k] for p in self.params)))
                for k in self.free}

    def summary(self) -> dict:
        return {"folds": [{"budget": float(b), "rmse": float(r), "bias": float(m), "n_points": int(k),
                           "params": dict(p)}
                          for b, r, m, k, p in zip(self.budgets, self.rmse, self.bias, self.n_points, self.params)],
                "rmse_pooled": self.rmse_pooled, "param_range": self.param_range(), "kind": self.kind}


def leave_one_budget_out(
    n,
    k_e,
    k_c,
    target,
    budget,
    h_y: float,
    kind: str = "loss",
    chance: Optional[float] = None,
    fix: Optional[dict] = None,
) -> BudgetHoldout:
    """Out-of-sample check of the model: for each budget, fit on the points of every other budget
    and predict the held-out budget's points.

    ``budget`` labels each point with its (planned) budget; at least 3 budgets are needed so that
    every fit sees 2. ``fix`` is passed to each :func:`fit_information_model` (give the full fit's
    ``fixed`` so that every fold fits the same parameters; a constant ``k_c`` fixes ``a_c, g_c``
    anyway). Reports per held-out budget the RMSE and mean bias of the predictions (in the fitted
    quantity: accuracy, or bits for a loss) and the fitted parameters, whose spread over the folds
    says whether they mean anything.
    """
    n, k_e, k_c, target, budget = (np.asarray(v, dtype=float) for v in (n, k_e, k_c, target, budget))
    if budget.shape != target.shape:
        raise ValueError(f"budget must label every point ({target.size}), got shape {budget.shape}")
    if not np.all(np.isfinite(budget)):
        raise ValueError("budget must be finite")
    labels = np.unique(budget)
    if labels.size < 3:
        raise ValueError(f"budget: need at least 3 budgets to hold one out and fit on 2, got {labels.size}")
    folds = []
    for b in labels:
        train, test = budget != b, budget == b
        fit = fit_information_model(n[train], k_e[train], k_c[train], target[train], h_y, kind=kind, chance=chance,
                                    fix=fix)
        pred = fit.predict(n[test], k_e[test], k_c[test])
        vals = fit.params.as_dict()
        if fit.q is not None:
            vals["q"] = float(fit.q)
        folds.append((b, pred, target[test], vals, fit.free))
    frees = {f[4] for f in folds}
    if len(frees) != 1:
        raise ValueError(f"the folds fitted different parameters {sorted(frees)}; give fix explicitly")
    err = [f[1] - f[2] for f in folds]
    return BudgetHoldout(
        budgets=labels, rmse=np.array([float(np.sqrt(np.mean(e ** 2))) for e in err]),
        bias=np.array([float(np.mean(e)) for e in err]), n_points=np.array([f[2].size for f in folds]),
        params=[f[3] for f in folds], predicted=[f[1] for f in folds], observed=[f[2] for f in folds],
        kind=kind, free=frees.pop())


# --------------------------------------------------------------------------- optimum at a budget
def affine_budget(p_fixed: float = 0.0) -> Callable:
    """``p_of(n, k_e, k_c) = n (k_c + k_e) + p_fixed`` (docs/design.md §3 form)."""
    if not isinstance(p_fixed, (int, float, np.integer, np.floating)) or not math.isfinite(p_fixed) or p_fixed < 0:
        raise ValueError(f"p_fixed must be a finite number >= 0, got {p_fixed!r}")

    def p_of(n, k_e, k_c):
        return n * (k_c + k_e) + p_fixed

    p_of.p_fixed = float(p_fixed)  # marks the affine form (closed-form N)
    return p_of


def estimate_p_fixed(rows: Sequence[dict]) -> float:
    """``P_fixed = median(p - n (k_c + k_e))`` over rows (the part of ``P`` not in hidden neurons)."""
    p, n, ke, kc = (st.column(rows, k) for k in ("p", "n", "k_e", "k_c"))
    v = p - n * (kc + ke)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("rows: need finite p, n, k_e, k_c to estimate p_fixed")
    return float(np.median(v))


def neurons_for_budget(budget: float, k_e: float, k_c: float, p_of: Optional[Callable] = None,
                       p_fixed: float = 0.0) -> float:
    """Continuous ``N`` with ``p_of(N, k_e, k_c) = budget`` (NaN when even ``N = 1`` is too large).

    Affine form: ``N = (budget - p_fixed) / (k_c + k_e)``. A callable ``p_of`` must increase
    with ``n``; its root is found by :func:`scipy.optimize.brentq`.
    """
    if p_of is None or hasattr(p_of, "p_fixed"):
        pf = p_fixed if p_of is None else p_of.p_fixed
        nn = (budget - pf) / (k_c + k_e)
        return float(nn) if nn >= 1 else float("nan")
    if not callable(p_of):
        raise ValueError("p_of must be callable p_of(n, k_e, k_c) -> parameters")
    f = lambda x: float(p_of(x, k_e, k_c)) - budget  # noqa: E731
    if f(1.0) > 0:
        return float("nan")
    hi = 2.0
    while f(hi) < 0:
        hi *= 2.0
        if hi > 1e15:
            raise ValueError("p_of does not reach the budget for any n <= 1e15 (must increase with n)")
    return float(optimize.brentq(f, hi / 2 if f(hi / 2) <= 0 else 1.0, hi, xtol=1e-9, rtol=1e-12))


def _log_snr(params, n, k_e, k_c) -> float:
    return float(np.log(snr_population(n, k_e, k_c, params)))


def optimal_allocation(
    params: InfoModelParams,
    budget: float,
    k_c: Union[float, Sequence[float]],
    p_of: Optional[Callable] = None,
    p_fixed: float = 0.0,
    k_e_values: Optional[Sequence[float]] = None,
    k_e_range: Optional[tuple] = None,
    h_y: Optional[float] = None,
    integer_n: bool = False,
) -> dict:
    """The ``(N*, k_e*, k_c*)`` maximising the information at parameter budget ``budget``.

    For each candidate ``k_c`` (scalar or sequence) and ``k_e``, ``N`` is the largest network the
    budget allows (:func:`neurons_for_budget`; floored when ``integer_n``); the objective is the
    uncapped ``log SNR_pop`` (monotone in ``I``, and well defined where the cap ``H(Y)`` ties).
    ``k_e`` ranges over ``k_e_values`` (discrete, e.g. the ELM's ``k_e`` per ``d_m``) or over
    ``k_e_range`` (default ``(1, budget)``): a 400-point log grid, refined by
    :func:`scipy.optimize.minimize_scalar` on ``log k_e``. Returns a dict with ``n``, ``k_e``,
    ``k_c``, ``p``, ``snr_1``, ``snr_pop``, ``information`` (capped when ``h_y``) and ``loss``
    (when ``h_y``).
    """
    params = _check_params(params)
    if not isinstance(budget, (int, float, np.integer, np.floating)) or not math.isfinite(budget) or budget <= 0:
        raise ValueError(f"budget must be a finite number > 0, got {budget!r}")
    budget = float(budget)
    kcs = [float(v) for v in np.atleast_1d(np.asarray(k_c, dtype=float))]
    if not kcs or any(not math.isfinite(v) or v <= 0 for v in kcs):
        raise ValueError(f"k_c must be > 0 (a number or a sequence), got {k_c!r}")
    pf = p_of if p_of is not None else affine_budget(p_fixed)

    def n_for(ke, kc):
        nn = neurons_for_budget(budget, ke, kc, pf)
        if integer_n and math.isfinite(nn):
            nn = float(math.floor(nn + 1e-9))
        return nn

    def objective(ke, kc):
        nn = n_for(ke, kc)
        return _log_snr(params, nn, ke, kc) if math.isfinite(nn) and nn >= 1 else -math.inf

    best = None
    for kc in kcs:
        if k_e_values is not None:
            cands = np.asarray(k_e_values, dtype=float)
            if cands.ndim != 1 or cands.size == 0 or np.any(~np.isfinite(cands)) or np.any(cands <= 0):
                raise ValueError("k_e_values must be a non-empty 1-D sequence of numbers > 0")
            scores = [objective(ke, kc) for ke in cands]
            i = int(np.argmax(scores))
            ke_best, sc = float(cands[i]), scores[i]
        else:
            lo, hi = k_e_range if k_e_range is not None else (1.0, budget)
            if not (0 < lo < hi):
                raise ValueError(f"k_e_range must be (lo, hi) with 0 < lo < hi, got {k_e_range!r}")
            grid = np.geomspace(lo, hi, 400)
            scores = np.array([objective(ke, kc) for ke in grid])
            if not np.any(np.isfinite(scores)):
                continue
            i = int(np.argmax(scores))
            a, b = math.log(grid[max(i - 1, 0)]), math.log(grid[min(i + 1, grid.size - 1)])
            if integer_n:
                ke_best, sc = float(grid[i]), float(scores[i])
            else:
                r = optimize.minimize_scalar(lambda u: -objective(math.exp(u), kc), bounds=(a, b),
                                             method="bounded", options={"xatol": 1e-10})
                ke_best, sc = (math.exp(r.x), -r.fun) if -r.fun >= scores[i] else (float(grid[i]), float(scores[i]))
        if math.isfinite(sc) and (best is None or sc > best[0]):
            best = (sc, ke_best, kc)
    if best is None:
        raise ValueError(f"budget={budget} is too small: no allocation with N >= 1 fits")
    _, ke, kc = best
    nn = n_for(ke, kc)
    out = dict(n=nn, k_e=ke, k_c=kc, p=float(pf(nn, ke, kc)), budget=budget,
               snr_1=float(snr_single(ke, kc, params)), snr_pop=float(snr_population(nn, ke, kc, params)))
    out["information"] = float(information(nn, ke, kc, params, h_y))
    if h_y is not None:
        out["loss"] = float(h_y - out["information"])
    return out


def optimum_path(params: InfoModelParams, budgets: Sequence[float], k_c, **kwargs) -> list[dict]:
    """:func:`optimal_allocation` for each budget (same keyword arguments), in order."""
    b = np.asarray(budgets, dtype=float)
    if b.ndim != 1 or b.size == 0:
        raise ValueError("budgets must be a non-empty 1-D sequence")
    return [optimal_allocation(params, float(x), k_c, **kwargs) for x in b]


def asymptotic_optimum(params: InfoModelParams, budget: float, k_c: float, p_fixed: float = 0.0) -> dict:
    """Leading-order large-budget optimum for the affine budget (module docstring):
    ``k_e* = sqrt(g_e a_e c B / (1 - c))``, ``N* = B / (k_c + k_e*)``, ``B = budget - p_fixed``."""
    params = _check_params(params)
    if not 0 < params.c < 1:
        raise ValueError(f"params.c must lie in (0, 1) for the asymptotic optimum, got {params.c}")
    bb = float(budget) - float(p_fixed)
    if bb <= 0:
        raise ValueError(f"budget must exceed p_fixed, got budget={budget}, p_fixed={p_fixed}")
    ke = math.sqrt(params.g_e * params.a_e * params.c * bb / (1 - params.c))
    return {"k_e": ke, "n": bb / (k_c + ke)}


def frontier_loss_limit(params: InfoModelParams, k_c: float, h_y: float) -> float:
    """``L_inf = H(Y) - min(0.5 log2(1 + s'/c), H(Y))`` with ``s' = s (k_c/(k_c+a_c))^g_c``."""
    h = _check_h(h_y, allow_none=False)
    if params.c <= 0:
        return 0.0
    i = 0.5 * math.log2(1 + float(saturation_limit(k_c, params)) / params.c)
    return h - min(i, h)


# --------------------------------------------------------------------------- plots
def plot_residuals(fit: InfoModelFit, path, title: Optional[str] = None) -> str:
    """Observed vs predicted (identity line) and residuals vs ``N``; both panels coloured by
    ``log10 k_e`` on one shared scale, with one colour bar that spans both panels."""
    path = check_png_path(path)
    if not isinstance(fit, InfoModelFit):
        raise ValueError(f"fit must be an InfoModelFit, got {type(fit).__name__}")
    fig, axs = new_figure(ncols=2, width=4.4, height=3.9)
    fig.set_layout_engine("constrained")
    col = np.log10(fit.k_e)
    vmax = float(col.max()) if col.max() > col.min() else float(col.min()) + 1.0
    norm = dict(cmap="viridis", vmin=float(col.min()), vmax=vmax)
    sc = axs[0].scatter(fit.fitted, fit.target, c=col, s=18, **norm)
    lo = min(fit.fitted.min(), fit.target.min())
    hi = max(fit.fitted.max(), fit.target.max())
    axs[0].plot([lo, hi], [lo, hi], "k--", lw=1, label="observed = predicted")
    unit = "loss (bits)" if fit.kind == "loss" else "accuracy"
    axs[0].set_xlabel(f"predicted {unit}")
    axs[0].set_ylabel(f"observed {unit}")
    axs[0].legend(fontsize=7, loc="upper left")
    res_unit = "bits" if fit.kind == "loss" else "accuracy"
    axs[0].set_title(title or f"R² = {fit.r2:.3f}, RMSE = {fit.rmse:.3g} ({res_unit})", fontsize=9)
    axs[1].scatter(fit.n, fit.residuals, c=col, s=18, **norm)
    axs[1].axhline(0, color="k", lw=1)
    set_log_axis(axs[1], fit.n)
    axs[1].set_xlabel("N")
    axs[1].set_ylabel(f"predicted - observed ({res_unit})")
    axs[1].set_title("residuals (one point per run)", fontsize=9)
    fig.colorbar(sc, ax=axs, label="log10 k_e (both panels)", shrink=0.9)
    for a in axs:
        a.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_model_surface(
    model: Union[InfoModelFit, InfoModelParams],
    budget: float,
    path,
    k_c: Optional[float] = None,
    p_of: Optional[Callable] = None,
    p_fixed: float = 0.0,
    h_y: Optional[float] = None,
    points: Optional[dict] = None,
    n_range: Optional[tuple] = None,
    k_e_range: Optional[tuple] = None,
    title: Optional[str] = None,
) -> str:
    """The model over ``(N, k_e)`` (contours), the iso-budget curve ``P = budget``, the predicted
    optimum (star) and measured points (``points = {"n", "k_e", "value"}``, same colour scale);
    right panel: the model along the iso-budget curve against ``N`` with the measured points.

    With an :class:`InfoModelFit` the surface is in its fitted quantity (loss in bits or
    accuracy) and ``k_c`` defaults to the median of its data; with bare parameters it is the
    loss when ``h_y`` is given, else the information in bits.
    """
    path = check_png_path(path)
    if isinstance(model, InfoModelFit):
        params, h = model.params, model.h_y
        kc = float(np.median(model.k_c)) if k_c is None else float(k_c)
        f = model.predict
        zlabel = "loss (bits)" if model.kind == "loss" else "accuracy"
    elif isinstance(model, InfoModelParams):
        params, h = model, h_y
        if k_c is None:
            raise ValueError("k_c is required when model is an InfoModelParams")
        kc = float(k_c)
        if h is None:
            f, zlabel = (lambda a, b, c: information(a, b, c, params)), "information (bits)"
        else:
            f, zlabel = (lambda a, b, c: predicted_loss(a, b, c, params, h)), "loss (bits)"
    else:
        raise ValueError(f"model must be an InfoModelFit or InfoModelParams, got {type(model).__name__}")
    pf = p_of if p_of is not None else affine_budget(p_fixed)
    opt = optimal_allocation(params, budget, kc, p_of=pf, h_y=h)
    pts = None
    if points is not None:
        if not isinstance(points, dict) or not {"n", "k_e", "value"} <= set(points):
            raise ValueError("points must be a dict with keys 'n', 'k_e', 'value'")
        pts = {k: np.asarray(points[k], dtype=float) for k in ("n", "k_e", "value")}
    n_lo, n_hi = n_range or (1.0, max(10.0, 30 * opt["n"]))
    ke_lo, ke_hi = k_e_range or (max(1.0, opt["k_e"] / 100), opt["k_e"] * 100)
    ng, kg = np.geomspace(n_lo, n_hi, 120), np.geomspace(ke_lo, ke_hi, 120)
    nn, kk = np.meshgrid(ng, kg)
    zz = f(nn, kk, kc)
    vmin, vmax = float(np.nanmin(zz)), float(np.nanmax(zz))
    if pts is not None and pts["value"].size:
        vmin, vmax = min(vmin, pts["value"].min()), max(vmax, pts["value"].max())
    fig, axs = new_figure(ncols=2, width=5.0)
    fig.set_layout_engine("constrained")  # before the colour bar: it takes its room from the left panel only
    ax = axs[0]
    cs = ax.contourf(nn, kk, zz, levels=20, cmap="viridis", vmin=vmin, vmax=vmax)
    ks = np.geomspace(ke_lo, ke_hi, 300)
    nb = np.array([neurons_for_budget(budget, k, kc, pf) for k in ks])
    ok = np.isfinite(nb) & (nb >= n_lo) & (nb <= n_hi)
    ax.plot(nb[ok], ks[ok], "k--", lw=1.5, label=f"networks with P = {budget:,.0f}")
    ax.plot(opt["n"], opt["k_e"], "r*", ms=14,
            label=f"model optimum (continuous) N {opt['n']:.0f}, k_e {opt['k_e']:.0f}")
    if pts is not None:
        ax.scatter(pts["n"], pts["k_e"], c=pts["value"], cmap="viridis", vmin=vmin, vmax=vmax,
                   edgecolors="k", s=40, zorder=3, label="measured (mean over seeds)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(n_lo, n_hi)
    ax.set_ylim(ke_lo, ke_hi)
    ax.set_xlabel("N")
    ax.set_ylabel("k_e")
    ax.legend(fontsize=7, loc="upper right")
    fig.colorbar(cs, ax=ax, label=zlabel)
    ax.set_title(title or f"model over (N, k_e) at k_c = {kc:g}", fontsize=9)
    ax = axs[1]
    fin = np.isfinite(nb)
    ax.plot(nb[fin], f(nb[fin], ks[fin], kc), "C0-", label=f"model along P = {budget:,.0f}")
    ax.axvline(opt["n"], color="r", ls=":", lw=1, label=f"model optimum N* = {opt['n']:.0f}")
    if pts is not None:
        ax.plot(pts["n"], pts["value"], "ko", ms=4, label="measured (mean over seeds)")
    ax.set_xscale("log")
    ax.set_xlabel("N")
    ax.set_ylabel(zlabel)
    ax.set_title(f"along the budget P = {budget:,.0f}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_optimum_path(path_rows: Sequence[dict], path, title: Optional[str] = None,
                      value_key: Optional[str] = None, value_label: Optional[str] = None) -> str:
    """``N*`` and ``k_e*`` against budget (log axes, left) and the model's value at the optimum
    (right): ``path_rows[value_key]`` (e.g. a predicted accuracy, labelled ``value_label``), by
    default the predicted loss, else the information, in bits."""
    path = check_png_path(path)
    st._check_rows(path_rows)
    if not path_rows:
        raise ValueError("path_rows must not be empty")
    b = np.array([r["budget"] for r in path_rows], float)
    fig, axs = new_figure(ncols=2, width=4.6)
    axs[0].loglog(b, [r["n"] for r in path_rows], "o-", label="N* (neurons)")
    axs[0].loglog(b, [r["k_e"] for r in path_rows], "s-", label="k_e* (parameters per neuron)")
    axs[0].set_xlabel("P (budget)")
    axs[0].set_ylabel("predicted optimum")
    axs[0].legend(fontsize=8)
    if value_key is None:
        value_key = "loss" if "loss" in path_rows[0] else "information"
        value_label = value_label or f"predicted {value_key} (bits)"
    if not all(value_key in r for r in path_rows):
        raise ValueError(f"value_key {value_key!r} is missing from path_rows")
    axs[1].semilogx(b, [r[value_key] for r in path_rows], "o-")
    axs[1].set_xlabel("P (budget)")
    axs[1].set_ylabel(value_label or value_key)
    axs[1].set_title("model value at its optimum", fontsize=9)
    axs[0].set_title(title or "model optimum vs budget", fontsize=9)
    for a in axs:
        set_log_axis(a, b)
        a.grid(alpha=0.3, which="major")
    set_log_axis(axs[0], [r[k] for r in path_rows for k in ("n", "k_e")], which="y")
    fig.tight_layout()
    return save_figure(fig, path)
