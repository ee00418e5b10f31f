"""Predictions of infinitely wide networks trained by gradient descent.

The API of `neural_tangents.predict` (0.6.5), in TensorFlow:

* `gradient_descent_mse`: outputs during gradient flow on MSE, in closed form,
  given the kernels (eigendecomposition for finite times, Cholesky for `t=None`).
* `gradient_descent_mse_ensemble`: mean and covariance of an infinite ensemble
  trained on MSE, from a `kernel_fn` and inputs.
* `gp_inference`: NNGP / NTK / NTKGP posteriors (infinite training time).
* `gp_inference_sweep`: the same for a list of `diag_reg` values, from
  kernel arrays or `KernelStore` files, in a memory budget (out of core when
  the kernel does not fit), with the log marginal likelihood.
* `gp_inference_nystrom`: Nyström GP means for millions of training points
  (Falkon's preconditioned conjugate gradients).
* `gradient_descent`: outputs for an arbitrary loss (and momentum) by solving
  the function-space ODE.
* `max_learning_rate`: the largest stable learning rate on MSE.

Results are tensors with the dtype of the kernels (float32 or float64).

Example:
  >>> import numpy as np
  >>> from nt_gp import predict
  >>> k = np.array([[2., 1.], [1., 2.]])
  >>> predict_fn = predict.gp_inference(k, np.array([[1.], [0.]]))
  >>> predict_fn('nngp', np.array([[1., 1.]])).shape
  TensorShape([1, 1])
"""
from nt_gp.predict.ensemble import gradient_descent_mse_ensemble
from nt_gp.predict.gp import gp_inference
from nt_gp.predict.lr import max_learning_rate
from nt_gp.predict.mse import gradient_descent_mse
from nt_gp.predict.nystrom import gp_inference_nystrom
from nt_gp.predict.ode import gradient_descent
from nt_gp.predict.records import Gaussian, ODEState
from nt_gp.predict.sweep import SweepPosterior, gp_inference_sweep

__all__ = ['gradient_descent', 'gradient_descent_mse',
           'gradient_descent_mse_ensemble', 'gp_inference',
           'gp_inference_sweep', 'gp_inference_nystrom', 'max_learning_rate',
           'ODEState', 'Gaussian', 'SweepPosterior']
