"""Polynomial nonlinearities: `Monomial`, `RectifiedMonomial`, `Polynomial`,
`Hermite`.

For z ~ GP with variances q11, q22, covariance q12 and p = q11 q22:

* `Monomial` ``x^d``:  E[z1^d z2^d] = Σ_k (d! / (2^k k!))² / (d - 2k)! ·
  q12^(d-2k) p^k (pairings of 2d Gaussian factors); the NTK factor is
  ``d² E[z1^(d-1) z2^(d-1)]``.
* `RectifiedMonomial` ``x^d [x >= 0]``: the arc-cosine kernel of Cho & Saul,
  ``p^(d/2) J_d(c) / (2π)`` with c = q12 / sqrt(p), J_0 = π - arccos c,
  J_1 = sqrt(1 - c²) + (π - arccos c) c and
  J_d = (2d - 1) c J_(d-1) + (d - 1)² (1 - c²) J_(d-2); since
  ``dJ_d/dc = d² J_(d-1)`` the NTK factor is ``d² p^((d-1)/2) J_(d-1)(c) / (2π)``.
* `Polynomial` ``Σ_n a_n x^n``: expanding in Hermite polynomials,
  E = Σ_l s_l(q11) s_l(q22) q12^l with
  ``s_l(q) = Σ_i a_(2i+l) (2i+l)! / (2^i i! sqrt(l!)) q^i``; NTK factor
  ``Σ_l l s_l(q11) s_l(q22) q12^(l-1)``.
* `Hermite` (normalised probabilists' Hermite polynomial of degree d, inputs
  assumed to have unit variance): q12' = q12^d, ntk' = d q12^(d-1) ntk.
"""
import math
import warnings

import numpy as np
import tensorflow as tf

from nt_gp import _callsite
from nt_gp import validation
from nt_gp.ops.safe_math import int_power, safe_atan2, sqrt_gram_det
from nt_gp.stax import hparams
from nt_gp.stax.elementwise import (elementwise, map_covariances,
                                    pin_self_covariances)
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking

__all__ = ['Monomial', 'RectifiedMonomial', 'Polynomial', 'Hermite']


def double_factorial(n: int) -> int:
  """``n!! = n (n - 2) (n - 4) ...``, with ``n!! = 1`` for ``n <= 0``.

  Example:
    >>> double_factorial(5), double_factorial(-1)
    (15, 1)
  """
  out = 1
  for i in range(n, 0, -2):
    out *= i
  return out


def _monomial_moment(q12, prod, degree: int):
  """E[z1^d z2^d] for a centred Gaussian pair with Cov = q12, Var·Var = prod."""
  if degree < 0:
    return tf.zeros_like(q12 * prod)
  out = None
  for k in range(degree // 2 + 1):
    m = degree - 2 * k
    coef = float((math.factorial(degree) // (2**k * math.factorial(k)))**2 //
                 math.factorial(m))
    term = coef * int_power(q12, m) * int_power(prod, k)
    out = term if out is None else out + term
  return out


@layer
@supports_masking(remask_kernel=False)
def Monomial(degree: int):
  """``x^degree``.

  Args:
    degree: a non-negative int (neural-tangents allows 0 to 5; any
      non-negative degree works here).

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Monomial(2))
    >>> float(kernel_fn(np.ones((1, 1)), get='nngp')[0, 0])  # E[z⁴] = 3
    3.0
  """
  degree = validation.check_int('degree', degree)

  def fn(x):
    return int_power(x, degree)

  def q_map(q12, q11, q22, ntk):
    prod = q11 * q22
    if ntk is not None:
      ntk = ntk * (degree**2 * _monomial_moment(q12, prod, degree - 1))
    return _monomial_moment(q12, prod, degree), ntk

  def diag(q):
    return double_factorial(2 * degree - 1) * int_power(q, degree)

  def rule(k):
    return map_covariances(k, q_map, diag_fn=diag)

  return elementwise(fn, f'{degree}-monomial', rule, packed=True)


def _arccos_kernel(q12, sin_root, degree: int):
  """p^(d/2) J_d(c) of Cho & Saul (2009), c = q12 / sqrt(p).

  With S = sqrt(p - q12²) = sqrt(p) sin θ the recurrence of J_d becomes
  K_d = (2d - 1) q12 K_(d-1) + (d - 1)² S² K_(d-2), K_0 = π - θ,
  K_1 = S + (π - θ) q12, free of divisions. θ = atan2(S, q12) is exactly 0
  on variances (where p - q12² is exactly 0).
  """
  k_prev = math.pi - safe_atan2(sin_root, q12, math.pi / 2)
  if degree == 0:
    return k_prev
  k = sin_root + k_prev * q12
  for n in range(2, degree + 1):
    k_prev, k = k, ((2 * n - 1) * q12 * k +
                    (n - 1)**2 * tf.square(sin_root) * k_prev)
  return k


@layer
@supports_masking(remask_kernel=False)
def RectifiedMonomial(degree: int):
  """``x^degree`` for ``x >= 0`` and 0 otherwise (``degree=1`` is ReLU,
  ``degree=0`` the Heaviside step).

  Args:
    degree: a non-negative int.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.RectifiedMonomial(2))
    >>> float(kernel_fn(np.ones((1, 1)), get='nngp')[0, 0])  # E[z⁴]/2
    1.5
  """
  degree = validation.check_int('degree', degree)

  def fn(x):
    return tf.where(x >= 0, int_power(x, degree), tf.zeros_like(x))

  def q_map(q12, q11, q22, ntk):
    sin_root = sqrt_gram_det(q12, q11, q22)
    if ntk is not None:
      if degree == 0:
        ntk = tf.zeros_like(ntk)
      else:
        ntk = ntk * (degree**2 / (2 * math.pi) *
                     _arccos_kernel(q12, sin_root, degree - 1))
    return _arccos_kernel(q12, sin_root, degree) / (2 * math.pi), ntk

  def diag(q):
    return double_factorial(2 * degree - 1) / 2 * int_power(q, degree)

  def rule(k):
    k = map_covariances(k, q_map, diag_fn=diag)
    # The step function's map has a square-root singularity at c = 1.
    return pin_self_covariances(k) if degree == 0 else k

  return elementwise(fn, f'{degree}-rectified-monomial', rule,
                     packed=degree != 0)


def _coefficients(coef):
  """Validated list of polynomial coefficients (numbers or scalar tensors)."""
  if isinstance(coef, (str, bytes)) or isinstance(coef, (bool, np.bool_)):
    raise TypeError(f'`coef` must be a sequence of numbers, got {coef!r}.')
  if isinstance(coef, (tf.Tensor, tf.Variable, np.ndarray)):
    shape = tf.TensorShape(coef.shape)
    if shape.rank != 1 or shape[0] is None:
      raise ValueError(f'`coef` must be 1-D with a known length, got shape '
                       f'{shape}.')
    if isinstance(coef, np.ndarray):
      return [hparams.check_hparam(f'coef[{i}]', float(c))
              for i, c in enumerate(coef)]
    return [coef[i] for i in range(shape[0])]
  try:
    coef = list(coef)
  except TypeError:
    raise TypeError(f'`coef` must be a sequence of numbers, got '
                    f'{coef!r}.') from None
  return [hparams.check_hparam(f'coef[{i}]', c) for i, c in enumerate(coef)]


@layer
@supports_masking(remask_kernel=False)
def Polynomial(coef):
  """``coef[0] + coef[1] x + ... + coef[n] x^n`` (numpy's coefficient order).

  Args:
    coef: a sequence of coefficients (numbers or scalar tensors/variables), or
      a 1-D array/tensor/variable of known length.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Polynomial([1., 0., 1.]))
    >>> float(kernel_fn(np.ones((1, 1)), get='nngp')[0, 0])  # E[(1 + z²)²]
    6.0
  """
  coefs = _coefficients(coef)
  n = len(coefs)

  def fn(x):
    out = tf.zeros_like(x)
    for c in reversed(coefs):
      out = out * x + hparams.cast(c, x.dtype)
    return out

  def s_polys(q, cs):
    """[s_0(q), ..., s_(n-1)(q)] (see module docstring)."""
    out = []
    for l in range(n):
      s = None
      for i in reversed(range((n - 1 - l) // 2 + 1)):
        m = 2 * i + l
        w = math.factorial(m) / (2**i * math.factorial(i) *
                                 math.sqrt(math.factorial(l)))
        term = w * cs[m]
        s = term if s is None else s * q + term
      out.append(s)
    return out

  def rule(k):
    cs = [hparams.cast(c, k.dtype) for c in coefs]

    def q_map(q12, q11, q22, ntk):
      s1, s2 = s_polys(q11, cs), s_polys(q22, cs)
      out = tf.zeros_like(q12)
      for l in reversed(range(n)):
        out = out * q12 + s1[l] * s2[l]
      if ntk is not None:
        t_dot = tf.zeros_like(q12)
        for l in reversed(range(1, n)):
          t_dot = t_dot * q12 + l * s1[l] * s2[l]
        ntk = ntk * t_dot
      return out, ntk

    def diag(q):
      s = s_polys(q, cs)
      out = tf.zeros_like(q)
      for l in reversed(range(n)):
        out = out * q + tf.square(s[l])
      return out

    return map_covariances(k, q_map, diag_fn=diag)

  return elementwise(fn, f'{n - 1}-polynomial', rule, packed=True)


@layer
@supports_masking(remask_kernel=True)
def Hermite(degree: int):
  """Normalised probabilists' Hermite polynomial ``He_d(x) / sqrt(d!)``.

  The kernel assumes unit-variance pre-activations (inputs normalised so that
  ``x·x / d == 1`` and ``W_std = 1``, no bias), where ``E[He_d He_d] / d! =
  c^d``; it maps q12 to ``q12^d`` (a warning reminds of the assumption).

  Args:
    degree: a non-negative int.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, apply_fn, _ = stax.Hermite(2)
    >>> apply_fn((), np.array([2.])).numpy().round(6).tolist()  # (x²-1)/√2
    [2.12132]
  """
  degree = validation.check_int('degree', degree)
  poly = np.polynomial.hermite_e.herme2poly([0] * degree + [1])
  norm = math.sqrt(math.factorial(degree))

  def fn(x):
    out = tf.zeros_like(x)
    for c in reversed(poly):
      out = out * x + float(c)
    return out / norm

  def rule(k):
    warnings.warn('Hermite: the kernel assumes inputs of unit variance across '
                  'channels/features (std(x, axis=channel_axis) == 1).',
                  stacklevel=_callsite.user_stacklevel())

    ntk = k.ntk
    if ntk is not None:
      if degree == 0:
        ntk = tf.zeros_like(ntk)
      else:
        ntk = degree * int_power(k.nngp, degree - 1) * ntk
    return k.map_covs(lambda t, _: int_power(t, degree),
                      ntk=False).replace(ntk=ntk)

  return elementwise(fn, f'{degree}-Hermite polynomial', rule, packed=True)
