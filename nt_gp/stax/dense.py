"""`Dense` and `Identity` layers."""
import tensorflow as tf

from nt_gp import validation
from nt_gp.stax import _random
from nt_gp.stax import hparams
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking
from nt_gp.stax.requirements import Diagonal, requires
from nt_gp.stax.rule_spec import capabilities
from nt_gp.stax.shapes import make_init_fn

__all__ = ['Dense', 'Identity', 'affine']


def affine(mat, w_var, b_var):
  """`w_var * mat + b_var` for a covariance (None and b_var=None pass through)."""
  if mat is None:
    return None
  mat = w_var * mat
  return mat if b_var is None else mat + b_var


@layer
@supports_masking(remask_kernel=True)
def Dense(out_dim: int,
          W_std=1.,
          b_std=None,
          batch_axis: int = 0,
          channel_axis: int = -1,
          parameterization: str = 'ntk',
          s=(1, 1)):
  r"""Fully-connected layer acting on the channel axis.

  In NTK parameterization, :math:`z = \sigma_W / \sqrt{N_{in}} W x + \sigma_b b`
  with :math:`W, b \sim N(0, 1)`; in standard parameterization
  :math:`W \sim N(0, \sigma_W^2 / N_{in})`, :math:`b \sim N(0, \sigma_b^2)` and
  `s = (s_in, s_out)` scales the widths (`W` has shape `(s_in N_in, s_out
  out_dim)`), as in neural-tangents.

  Args:
    out_dim: output width (ignored by the kernel in NTK parameterization).
    W_std: weight standard deviation (number, tensor or variable; > 0).
    b_std: bias standard deviation; `None` means no bias.
    batch_axis: batch axis of the inputs.
    channel_axis: feature axis of the inputs.
    parameterization: `'ntk'` or `'standard'`.
    s: width scalings for the standard parameterization.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.Dense(1, W_std=2., b_std=0.5)
    >>> x = np.array([[1., 1.]])
    >>> float(kernel_fn(x, get='nngp')[0, 0])   # 2² · (x·x / 2) + 0.5²
    4.25
  """
  parameterization = validation.check_parameterization(parameterization)
  W_std = hparams.check_std('W_std', W_std)
  b_std = hparams.check_std('b_std', b_std, allow_none=True, allow_zero=True)
  validation.check_positive_int('out_dim', out_dim)
  out_width = out_dim * (s[1] if parameterization == 'standard' else 1)

  def shape_fn(input_shape):
    ca = channel_axis % len(input_shape)
    return input_shape[:ca] + (out_width,) + input_shape[ca + 1:]

  def params_fn(key, input_shape):
    ca = channel_axis % len(input_shape)
    k1, k2 = _random.split(key)
    W = _random.normal(k1, (input_shape[ca], out_width))
    b = None
    if b_std is not None:
      b_shape = [1] * len(input_shape)
      b_shape[ca] = out_width
      b = _random.normal(k2, b_shape)
    if parameterization == 'standard':
      W = W * tf.cast(W_std, W.dtype) / (input_shape[ca] / s[0]) ** 0.5
      b = None if b is None else b * tf.cast(b_std, b.dtype)
    return W, b

  def apply_fn(params, inputs, **kwargs):
    W, b = params
    inputs = tf.convert_to_tensor(inputs)
    dtype = inputs.dtype
    ca = channel_axis % inputs.shape.rank
    W = tf.cast(W, dtype)
    x = tf.experimental.numpy.moveaxis(inputs, ca, -1)
    out = tf.experimental.numpy.moveaxis(tf.tensordot(x, W, [[-1], [0]]), -1,
                                         ca)
    if parameterization == 'ntk':
      out = hparams.cast(W_std, dtype) / inputs.shape[ca] ** 0.5 * out
      if b is not None:
        out = out + hparams.cast(b_std, dtype) * tf.cast(b, dtype)
    else:
      out = out / s[0] ** 0.5
      if b is not None:
        out = out + tf.cast(b, dtype)
    return out

  @requires(batch_axis=batch_axis, channel_axis=channel_axis,
            diagonal_spatial=Diagonal())
  @capabilities(packed=True)
  def rule(k, **kwargs):
    dtype = k.dtype
    w_var = hparams.squared(W_std, dtype, 'W_std', positive=True)
    b_var = hparams.squared(b_std, dtype)
    cov1, nngp, cov2, ntk = k.cov1, k.nngp, k.cov2, k.ntk
    if parameterization == 'ntk':
      cov1, nngp, cov2 = (affine(c, w_var, b_var) for c in (cov1, nngp, cov2))
      if ntk is not None:
        ntk = nngp + w_var * ntk
    else:
      in_width = k.shape1[channel_axis] / s[0]
      if ntk is not None:
        ntk = in_width * nngp + w_var * ntk
        if b_std is not None:
          ntk = ntk + 1.
      cov1, nngp, cov2 = (affine(c, w_var, b_var) for c in (cov1, nngp, cov2))
    return k.replace(cov1=cov1, nngp=nngp, cov2=cov2, ntk=ntk,
                     is_gaussian=True, is_input=False)

  def mask_fn(mask, input_shape):
    return tf.reduce_all(mask, axis=channel_axis, keepdims=True)

  return make_init_fn(shape_fn, params_fn), apply_fn, rule, mask_fn


@layer
@supports_masking(remask_kernel=False)
def Identity():
  """The identity layer.

  Example:
    >>> from nt_gp import stax
    >>> _, apply_fn, _ = stax.Identity()
    >>> float(apply_fn((), 3.))
    3.0
  """
  init_fn = make_init_fn(lambda shape: shape)

  def apply_fn(params, inputs, **kwargs):
    return tf.convert_to_tensor(inputs) if not isinstance(
        inputs, (list, tuple)) else inputs

  @capabilities(packed=True)
  def rule(k, **kwargs):
    return k
  return init_fn, apply_fn, rule
