r"""ABSGD as a scikit-learn classifier, for tabular data and frozen embeddings.

:class:`ABSGDClassifier` trains a linear model (default) or a ReLU MLP on the objective of
Qi, Xu, Yin, Jin, Yang, "Attentional-Biased Stochastic Gradient Descent", TMLR 2023 (arXiv
2012.06951) behind the scikit-learn API: ``fit`` / ``partial_fit`` / ``predict_proba`` /
``Pipeline`` / ``GridSearchCV``. scikit-learn (>= 1.6) is needed by this package only:
``import absgd`` does not import it.

The objective. With per-sample losses ``l_i`` (any loss of :data:`absgd.losses.LOSSES`),
sample weights ``ω_i`` and class weights ``c_{y_i}`` (both 1 by default), ``v_i = ω_i c_{y_i}
l_i`` (``placement="inside"``, the default: the weights sit in the exponent, as the class
weights of the authors' code)::

    R_λ = λ log mean_i exp(v_i / λ)  +  (α/2) Σ ‖W‖²

whose gradient weighs sample ``i`` by ``p_i = softmax(v/λ)_i``. ``solver="lbfgs"`` (default)
minimises it on the whole training set. The mini-batch solvers are ABSGD proper (``"sgd"``)
and ABAdam (``"adam"``)::

    s_t  = (1 - γ) s_{t-1} + γ · mean_i exp(v_i / λ)     moving-average normaliser
    p_i  = exp(v_i / λ) / (B · s_t)                      detached attentional weight
    step on  Σ_i p_i · v_i + (α/2) Σ ‖W‖²                one backward pass

With ``placement="outside"`` the weights ``p_i`` come from ``l_i`` instead and the step is on
the same ``Σ_i p_i · v_i``. λ > 0 up-weights hard samples, hence those of rare classes; λ < 0
down-weights them (label noise); ``lam=math.inf`` is the plain weighted mean loss. Nothing is
normalised by the mean weight (as in :class:`sklearn.linear_model.LogisticRegression`), so
weights rescale the loss; the ``"balanced"`` and ``"effective_number"`` class weights average
1 over the training samples.

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

Layout: ``_estimator`` (the class), ``_solvers`` (full-batch L-BFGS, mini-batch epochs, the
stopping rule), ``_network`` (the model, its penalty and logits), ``_data`` (input checks).
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

__all__ = ["ABSGDClassifier"]
