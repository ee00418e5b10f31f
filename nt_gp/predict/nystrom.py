"""`gp_inference_nystrom`: Nyström GP means for millions of training points."""
import numbers

import numpy as np

__all__ = ['gp_inference_nystrom']


def gp_inference_nystrom(kernel_fn, x_train, y_train, diag_reg=0.,
                         diag_reg_absolute_scale=False, *, get='nngp',
                         n_centres=1000, centres='uniform', validation=None,
                         batch_size=1024, tol=1e-7, max_iter=100, patience=3,
                         memory_limit=None, cache_dir=None, runner=None,
                         seed=0, progress=False, posterior=False):
  r"""GP posterior means with ``M`` Nyström centres, in `gp_inference` style.

  The subset-of-regressors / DTC mean ``K(x, Z) (K_ZX K_XZ + s2 K_ZZ)^{-1}
  K_ZX y`` with ``s2`` = `diag_reg` (relative to the mean of ``diag K(X, X)``
  unless `diag_reg_absolute_scale`) — what GPflow's `SGPR` predicts with
  inducing points ``Z`` and noise variance ``s2`` — solved by Falkon's
  preconditioned conjugate gradients over blocks of ``K(X, Z)`` that
  `kernel_fn` computes on the fly, so ``N`` can be in the millions
  (`nt_gp.solve.nystrom_sweep`). With all training points as centres it is
  the exact GP mean.

  Args:
    kernel_fn: a `stax` kernel function.
    x_train: ``(N, ...)`` inputs (their dtype is the kernel's).
    y_train: ``(N,)`` / ``(N, C)`` targets, or integer class labels.
    diag_reg: a non-negative number or a list (a leading axis in the
      results).
    diag_reg_absolute_scale: as in `gp_inference`.
    get: ``'nngp'`` or ``'ntkgp'`` (``'ntk'``: the same mean).
    n_centres: ``M``.
    centres: ``'uniform'``, ``'leverage'`` or indices into `x_train`.
    validation: ``(x_val, y_val)`` for early stopping.
    batch_size, tol, max_iter, patience, memory_limit, cache_dir, runner,
      seed, progress: see `nt_gp.solve.nystrom_sweep`.
    posterior: also make `predict_fn.variance` and the log marginal
      likelihood available (one more ``N M^2`` product in the first pass;
      every `diag_reg` must be positive).

  Returns:
    `predict_fn(x_test)` returning ``(T, C)`` means (``(R, T, C)`` for a
    list of `diag_reg`); `predict_fn.result` is the
    `nt_gp.solve.NystromResult` (centres, coefficients, iterations, and
    with `posterior` its `log_marginal_likelihood` and `elbo`). With
    `posterior`, `predict_fn.variance(x_test)` returns the ``(T,)``
    (``(R, T)``) variances of GPflow's `SGPR` with inducing points ``Z``.

  Example:
    >>> import numpy as np
    >>> from nt_gp import predict, stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1, 1.5), stax.Relu(),
    ...                               stax.Dense(1, 1.5))
    >>> x = np.random.RandomState(0).randn(500, 2)
    >>> predict_fn = predict.gp_inference_nystrom(
    ...     kernel_fn, x, np.sin(x[:, 0]), diag_reg=1e-2, n_centres=100)
    >>> predict_fn(x[:3]).shape
    (3, 1)
    >>> predict_fn = predict.gp_inference_nystrom(
    ...     kernel_fn, x, np.sin(x[:, 0]), diag_reg=1e-2, n_centres=100,
    ...     posterior=True)
    >>> predict_fn.variance(x[:3]).shape
    (3,)
  """
  from nt_gp.solve.nystrom import nystrom_sweep  # pylint: disable=g-import-not-at-top
  single_reg = isinstance(diag_reg, numbers.Number) or np.ndim(diag_reg) == 0
  result = nystrom_sweep(
      y_train, diag_reg, diag_reg_absolute_scale, kernel_fn=kernel_fn,
      x_train=x_train, get=get, n_centres=n_centres, centres=centres,
      validation=validation, batch_size=batch_size, tol=tol,
      max_iter=max_iter, patience=patience, memory_limit=memory_limit,
      cache_dir=cache_dir, runner=runner, seed=seed, progress=progress,
      posterior=posterior)

  def predict_fn(x_test):
    """Posterior means at `x_test`; see `gp_inference_nystrom`."""
    mean = result.predict(x_test)
    return mean[0] if single_reg else mean

  def variance(x_test):
    """Posterior variances at `x_test`; see `gp_inference_nystrom`."""
    out = result.predict_variance(x_test)
    return out[0] if single_reg else out

  predict_fn.result = result
  predict_fn.variance = variance
  return predict_fn
