"""GP regression with precomputed kernels and with learned GPflow models.

* `evidence_regression`: GP posterior mean with a fixed (precomputed) kernel
  `K`, via `nt_gp.predict.gp_inference`. The kernel scale and the noise
  (diagonal regulariser relative to the mean of `diag(K)`) are chosen by the
  marginal likelihood: for each regulariser on a grid the best scale is
  closed-form, so no optimiser is needed.
* `fit_gpflow`: a GPflow `GPR` whose kernel hyperparameters and noise are
  learned with `gpflow.optimizers.Scipy` (L-BFGS-B), recording the negative
  log marginal likelihood after every iteration.
"""
from typing import List, NamedTuple

import numpy as np

__all__ = ['Fit', 'evidence_regression', 'fit_gpflow', 'accuracy', 'rmse']


class Fit(NamedTuple):
  """Posterior mean on the test set and how it was obtained.

  Attributes:
    mean: `(N_test, K)` posterior mean.
    diag_reg: the regulariser chosen (relative to the mean of `diag(K)`), or
      the learned noise variance for GPflow models.
    curve: negative log marginal likelihood per optimiser iteration (GPflow
      models) or over the regulariser grid (precomputed kernels).
    seconds: wall time of the fit and prediction.

  Example:
    >>> fit = Fit(np.zeros((2, 1)), 1e-3, [3.0, 2.5], 0.1)
    >>> fit.curve[-1] < fit.curve[0]
    True
  """
  mean: np.ndarray
  diag_reg: float
  curve: List[float]
  seconds: float


def accuracy(mean, labels) -> float:
  """Fraction of rows whose largest output is the label.

  Example:
    >>> accuracy(np.array([[0.9, 0.1], [0.2, 0.3]]), np.array([0, 0]))
    0.5
  """
  return float(np.mean(np.argmax(mean, axis=1) == labels))


def rmse(mean, y) -> float:
  """Root mean squared error.

  Example:
    >>> rmse(np.array([[1.], [3.]]), np.array([[0.], [3.]]))
    0.7071067811865476
  """
  return float(np.sqrt(np.mean((np.asarray(mean) - y) ** 2)))


def evidence_regression(k_train, k_test_train, y_train,
                        grid=tuple(10.0 ** np.arange(-4., 1.01, 0.5))) -> Fit:
  """GP regression with a fixed kernel, noise chosen by the evidence.

  For each relative regulariser `r` in `grid`, with `A = K + r mean(diag K) I`
  and `m` target columns, the scale `s2 = tr(Y^T A^-1 Y) / (n m)` maximises
  the marginal likelihood of `Y ~ N(0, s2 A)` (per column), whose value is
  then `-(n m + m log|A| + n m log(2 pi s2)) / 2`. The best `r` is used by
  `nt_gp.predict.gp_inference` (the scale cancels in the mean). Targets are
  centred with their training mean.

  Example:
    >>> x = np.linspace(-2, 2, 30)[:, None]
    >>> k = np.exp(-0.5 * (x - x.T) ** 2)
    >>> fit = evidence_regression(k, k[:5], np.sin(x))
    >>> fit.mean.shape, bool(np.abs(fit.mean - np.sin(x[:5])).max() < 0.05)
    ((5, 1), True)
  """
  import time  # pylint: disable=g-import-not-at-top
  from nt_gp import predict  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  k_train = np.asarray(k_train, np.float64)
  y_train = np.asarray(y_train, np.float64)
  offset = y_train.mean(0, keepdims=True)
  y = y_train - offset
  n, m = y.shape
  scale = np.mean(np.diag(k_train))
  curve = []
  for r in grid:
    a = k_train + r * scale * np.eye(n)
    try:
      chol = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
      curve.append(np.inf)
      continue
    z = np.linalg.solve(chol, y)
    s2 = np.sum(z ** 2) / (n * m)
    logdet = 2 * np.sum(np.log(np.diag(chol)))
    curve.append(0.5 * (n * m + m * logdet + n * m * np.log(2 * np.pi * s2)))
  best = float(grid[int(np.argmin(curve))])
  predict_fn = predict.gp_inference(k_train, y, diag_reg=best)
  mean = predict_fn('nngp', np.asarray(k_test_train, np.float64)).numpy()
  return Fit(mean + offset, best, [float(c) for c in curve],
             time.time() - t0)


def fit_gpflow(kernel, x_train, y_train, x_test, maxiter: int = 30,
               noise_variance: float = 0.1) -> Fit:
  """GPflow `GPR` with learned kernel hyperparameters and noise.

  Targets are centred and scaled to unit variance (the mean and scale are
  restored in the prediction), so one initial noise level suits every data
  set. Records the negative log marginal likelihood before the first and
  after each L-BFGS-B iteration.

  Example:
    >>> import gpflow
    >>> x = np.linspace(-2, 2, 20)[:, None]
    >>> fit = fit_gpflow(gpflow.kernels.SquaredExponential(), x, np.sin(x),
    ...                  x[:3], maxiter=5)
    >>> fit.mean.shape, len(fit.curve) >= 1
    ((3, 1), True)
  """
  import time  # pylint: disable=g-import-not-at-top
  import check_shapes  # pylint: disable=g-import-not-at-top
  import gpflow  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  x_train = np.asarray(x_train, np.float64)
  y_train = np.asarray(y_train, np.float64)
  offset = y_train.mean(0, keepdims=True)
  scale = y_train.std()
  y = (y_train - offset) / scale
  model = gpflow.models.GPR((x_train, y), kernel,
                            noise_variance=noise_variance)
  # Shape checks make tracing the loss and its gradient twice as slow.
  with check_shapes.disable_check_shapes():
    initial = float(model.training_loss())
    result = gpflow.optimizers.Scipy().minimize(
        model.training_loss, model.trainable_variables,
        track_loss_history=True, options=dict(maxiter=maxiter))
    mean, _ = model.predict_f(np.asarray(x_test, np.float64))
  curve = [initial] + [float(v) for v in result['loss_history']]
  return Fit(mean.numpy() * scale + offset,
             float(model.likelihood.variance.numpy()), curve,
             time.time() - t0)
