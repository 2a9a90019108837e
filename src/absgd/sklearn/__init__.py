r"""ABSGD as a scikit-learn classifier, for tabular data and frozen embeddings.

:class:`ABSGDClassifier` trains a linear model (default) or a ReLU MLP on the objective of
Qi, Xu, Yin, Jin, Yang, "Attentional-Biased Stochastic Gradient Descent", TMLR 2023 (arXiv
2012.06951) behind the scikit-learn API: ``fit`` / ``partial_fit`` / ``predict_proba`` /
``Pipeline`` / ``GridSearchCV``. scikit-learn (>= 1.6) is needed by this package only:
``import absgd`` does not import it.

The objective. With per-sample losses ``l_i`` (any loss of :data:`absgd.losses.LOSSES`),
sample weights ``ω_i`` and class weights ``c_{y_i}`` (both 1 by default), ``u_i = ω_i c_{y_i}``.
With ``placement="outside"`` (the default) the weights stay outside the exponent: the tilted
risk of the ``u``-weighted training set, scaled by ``ū = mean u``::

    R_λ = ū · λ log Σ_i q_i exp(l_i / λ),   q_i = u_i / Σ_j u_j      (+ (α/2) Σ ‖W‖²)

With ``placement="inside"`` (as the class weights of the authors' code) ``v_i = u_i l_i``
sits in the exponent: ``R_λ = λ log mean_i exp(v_i / λ)``. Both are the mean weighted loss at
λ = ∞ (:func:`absgd.risk.entropic_risk`). ``solver="lbfgs"`` (default) minimises ``R_λ`` on
the whole training set, with λ set so that the attentional weights at the optimum keep the
effective sample size ``target_ess`` (0.9 by default). The mini-batch solvers are ABSGD
proper (``"sgd"``) and ABAdam (``"adam"``), with ``e_i = l_i`` outside and ``v_i`` inside::

    s_t  = (1 - γ) s_{t-1} + γ · mean_i exp(e_i / λ)     moving-average normaliser
    p_i  = exp(e_i / λ) / (B · s_t)                      detached attentional weight
    step on  Σ_i p_i · u_i l_i + (α/2) Σ ‖W‖²            one backward pass

λ > 0 up-weights hard samples, hence those of rare classes; λ < 0 down-weights them (label
noise); ``lam=math.inf`` is the plain weighted mean loss. Nothing is normalised by the mean
weight (as in :class:`sklearn.linear_model.LogisticRegression`), so weights rescale the loss;
the ``"balanced"`` and ``"effective_number"`` class weights average 1 over the training
samples.

Batching of the mini-batch solvers (what makes ``fit`` and ``partial_fit`` comparable).
``fit`` runs up to ``max_iter`` epochs; each epoch visits the training rows in a random order
(``shuffle=True``) or in the given order (``shuffle=False``) in consecutive mini-batches of
``batch_size`` rows, the last one possibly smaller. ``partial_fit(X, y)`` is one pass over
``X`` in the given order with the same batching, continuing the model, the ABSGD normaliser
and the optimiser state. So with ``shuffle=False`` and ``early_stopping=False``, ``fit(X, y)``
with ``max_iter=1`` equals ``partial_fit`` over consecutive chunks of ``X`` whose sizes are
multiples of ``batch_size``.

Randomness. ``rng = sklearn.utils.check_random_state(random_state)``; ``fit`` draws, in this
order, ``seed = rng.randint(2**31 - 1)``, the validation split (``early_stopping=True``) and
one permutation of the training rows per epoch (``shuffle=True``). The parameters are
initialised, layer by layer, weight then bias, uniformly in ``±1/sqrt(fan_in)`` (the
distribution of ``torch.nn.Linear``) from ``torch.Generator().manual_seed(seed)``; the global
torch and numpy random states are left alone. ``partial_fit`` draws only ``seed``, on its
first call.

Layout: ``_estimator`` (the class: parameters, ``fit``, ``partial_fit``, prediction),
``_params`` (hyperparameter checks, class weights), ``_full_batch`` (``solver="lbfgs"`` and
the search for λ with ``target_ess``), ``_minibatch`` (the epochs of ``solver="sgd"`` /
``"adam"``), ``_solvers`` (L-BFGS, one mini-batch epoch, the stopping rule), ``_linear``
(the closed-form objective of a linear model), ``_network`` (the model, its penalty and
logits), ``_data`` (input checks), ``_selection`` (:class:`GuardedRefit`, the guarded rule
for choosing λ in a search).
"""

from __future__ import annotations

try:
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "absgd.sklearn needs scikit-learn >= 1.6; install it with "
        "pip install 'torch-absgd[sklearn]'"
    ) from exc

from absgd.sklearn._estimator import ABSGDClassifier
from absgd.sklearn._selection import GuardedRefit

__all__ = ["ABSGDClassifier", "GuardedRefit"]
