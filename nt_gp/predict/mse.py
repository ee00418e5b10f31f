"""`gradient_descent_mse`: closed-form gradient flow on MSE given kernels."""
import numpy as np
import tensorflow as tf

from nt_gp.predict import _eigen
from nt_gp.predict import _utils
from nt_gp.predict.gp import CholeskySolver

__all__ = ['gradient_descent_mse']


def gradient_descent_mse(k_train_train, y_train, learning_rate=1.,
                         diag_reg=0., diag_reg_absolute_scale=False,
                         trace_axes=(-1,)):
  r"""Outputs during continuous-time gradient descent on MSE, in closed form.

  For the loss `0.5 * mean((f(x_train) - y_train)**2)` the outputs in function
  space follow `df/dt = -learning_rate * K (f - y_train) / y_train.size`, whose
  solution is computed from an eigendecomposition of `k_train_train` (finite
  `t`) or a Cholesky factorization (`t=None`, infinite time). Both are
  computed on first use and cached. Times are in units of `learning_rate`
  (`absolute_time = learning_rate * t`).

  Args:
    k_train_train: train-train kernel (NTK for trained networks), shape
      `(N_train, N_train)`: the shape of `y_train` without `trace_axes`,
      zipped with itself (e.g. `(N, N, K, K)` for `trace_axes=()`). float32 or
      float64; outputs have this dtype.
    y_train: targets, e.g. `(N_train, K)`.
    learning_rate: non-negative learning rate.
    diag_reg: non-negative diagonal regularizer added to `k_train_train`.
    diag_reg_absolute_scale: False (default): `diag_reg` is relative to the
      mean diagonal of `k_train_train`; True: absolute.
    trace_axes: axes of `y_train` that the kernel lacks (kernel is `K ⊗ I`
      along them).

  Returns:
    `predict_fn(t=None, fx_train_0=0., fx_test_0=None, k_test_train=None)`
    returning `fx_train_t`, `fx_test_t` or `(fx_train_t, fx_test_t)`:

    * `t`: a scalar or an array of times (outputs get leading axes `t.shape`);
      None means infinite time (Cholesky solve instead of eigendecomposition).
    * `fx_train_0`: train outputs at `t=0` (broadcastable to `y_train.shape`),
      or None to skip train predictions.
    * `fx_test_0`: test outputs at `t=0`, or None to skip test predictions.
    * `k_test_train`: test-train kernel, e.g. `(N_test, N_train)`; needed for
      test predictions.

  Example:
    >>> import numpy as np
    >>> from nt_gp import predict
    >>> k = np.array([[1., 0.], [0., 2.]])
    >>> y = np.array([[1.], [1.]])
    >>> predict_fn = predict.gradient_descent_mse(k, y)
    >>> np.round(predict_fn(t=2., fx_train_0=0.).numpy(), 4)  # 1 - exp(-k t/2)
    array([[0.6321],
           [0.8647]])
    >>> predict_fn(t=[0., 1., 2.], fx_train_0=0.).shape
    TensorShape([3, 2, 1])
  """
  k = _utils.to_tensor(k_train_train, 'k_train_train')
  dtype = k.dtype
  y = _utils.check_finite(_utils.to_tensor(y_train, 'y_train', dtype),
                          'y_train')
  layout = _utils.Layout.of(y.shape, trace_axes)
  train_shape = layout.nontrace_shape
  _utils.check_kernel(k, 'k_train_train', train_shape, train_shape)
  _utils.check_scalar(learning_rate, 'learning_rate')
  _utils.check_scalar(diag_reg, 'diag_reg')
  k2d = _utils.make_2d(k)
  _utils.check_symmetric(k2d, 'k_train_train')
  y_shape = tuple(y.shape)
  size = float(np.prod(y_shape))

  solver = CholeskySolver(k2d, diag_reg, diag_reg_absolute_scale,
                          'k_train_train')
  basis = _eigen.EigenBasis(k2d, diag_reg, diag_reg_absolute_scale)

  def predict_fn(t=None, fx_train_0=0., fx_test_0=None, k_test_train=None):
    """Train [and test] outputs at time[s] `t`; see `gradient_descent_mse`."""
    _utils.check_predict_inputs(fx_train_0, fx_test_0, k_test_train)
    if fx_train_0 is not None:
      fx_train_0 = _utils.broadcast_exact(
          _utils.to_tensor(fx_train_0, 'fx_train_0', dtype), y_shape,
          'fx_train_0')
    if fx_test_0 is not None:
      k_td = _utils.to_tensor(k_test_train, 'k_test_train', dtype)
      _utils.check_kernel(k_td, 'k_test_train', cols=train_shape)
      test_shape = _utils.kernel_sides(k_td)[0]
      k_td2d = _utils.make_2d(k_td)
      fx_test_0 = _utils.broadcast_exact(
          _utils.to_tensor(fx_test_0, 'fx_test_0', dtype),
          layout.targets_shape(test_shape), 'fx_test_0')

    if t is None:
      fx_train_t = y
      if fx_test_0 is None:
        return fx_train_t
      rhs = y if fx_train_0 is None else y - fx_train_0
      dfx = tf.matmul(k_td2d, solver.solve(layout.flatten(rhs)))
      fx_test_t = fx_test_0 + layout.unflatten(dfx, (), test_shape)
      return fx_test_t if fx_train_0 is None else (fx_train_t, fx_test_t)

    t = _utils.as_times(t, dtype) * _utils.scalar_as(learning_rate, dtype)
    t_shape = tuple(t.shape)
    t = tf.reshape(t, (-1, 1))
    evals, _ = basis.eigh()
    rhs = -y if fx_train_0 is None else fx_train_0 - y
    rhs = layout.flatten(rhs)

    out = []
    if fx_train_0 is not None:
      dfx = basis.apply(_eigen.expm1(evals, t, size), rhs)
      out.append(fx_train_0 + layout.unflatten(dfx, t_shape, train_shape))
    if fx_test_0 is not None:
      dfx = basis.apply(_eigen.inv_expm1(evals, t, size), rhs)
      dfx = tf.einsum('ij,tjm->tim', k_td2d, dfx)
      out.append(fx_test_0 + layout.unflatten(dfx, t_shape, test_shape))
    return out[0] if len(out) == 1 else tuple(out)

  return predict_fn
