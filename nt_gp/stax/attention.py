"""`GlobalSelfAttention`: multi-head dot-product self-attention over all
spatial positions, with its infinite-width (many heads and channels) kernel.

Kernel rule (neural-tangents' "Infinite attention", Hron et al. 2020), on
covariances flattened to matrices between positions ``p, q``
(`nt_gp.ops.spatial_matrix`):

* ``linear_scaling=True`` (keys and queries tied, scaled by ``1/d``): the
  attention weights converge to ``G[n] = f(QK_std * Sigma[n])`` where
  ``Sigma[n]`` is the input covariance of example ``n`` (mixed with the
  positional-embedding covariance), ``f`` the attention mechanism applied
  along the key positions ``q``; outputs are ``G1 K G2^T`` (times
  ``(W_out_std W_value_std)^2``, plus ``b_std^2``).
* ``linear_scaling=False`` with the ``IDENTITY`` mechanism: the closed form in
  terms of Frobenius products of the covariances.
"""
import enum
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from nt_gp import validation
from nt_gp.ops import packing
from nt_gp.ops import spatial_matrix
from nt_gp.ops import static_shape
from nt_gp.stax import _random
from nt_gp.stax import hparams
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking
from nt_gp.stax.requirements import Bool, Diagonal, requires
from nt_gp.stax.rule_spec import capabilities
from nt_gp.stax.shapes import make_init_fn

__all__ = ['GlobalSelfAttention', 'AttentionMechanism', 'PositionalEmbedding']

# Logit of masked keys before a softmax (finite, so that fully masked rows
# stay finite).
_NEG_INF = -1e20


class AttentionMechanism(enum.Enum):
  """Nonlinearity applied to the key-query products in `GlobalSelfAttention`.

  Attributes:
    SOFTMAX: softmax over the key positions.
    IDENTITY: the products themselves.
    ABS: their absolute values.
    RELU: their positive parts.

  Example:
    >>> AttentionMechanism('RELU').name
    'RELU'
  """
  SOFTMAX = 'SOFTMAX'
  IDENTITY = 'IDENTITY'
  ABS = 'ABS'
  RELU = 'RELU'


class PositionalEmbedding(enum.Enum):
  """Positional embeddings of `GlobalSelfAttention`.

  Attributes:
    NONE: no positional embeddings.
    SUM: embeddings added to the activations.
    CONCAT: embeddings concatenated to the activations along the channels.

  Example:
    >>> PositionalEmbedding('CONCAT') is PositionalEmbedding.CONCAT
    True
  """
  NONE = 'NONE'
  SUM = 'SUM'
  CONCAT = 'CONCAT'


def _as_enum(cls, value, name):
  if isinstance(value, cls):
    return value
  if isinstance(value, str):
    try:
      return cls(value.upper())
    except ValueError:
      pass
  raise ValueError(f'`{name}` must be one of {[m.value for m in cls]}, got '
                   f'{value!r}.')


def _weights_fn(mechanism: AttentionMechanism):
  if mechanism == AttentionMechanism.SOFTMAX:
    return lambda g: tf.nn.softmax(g, axis=-1)
  if mechanism == AttentionMechanism.IDENTITY:
    return lambda g: g
  if mechanism == AttentionMechanism.ABS:
    return tf.abs
  return tf.nn.relu


def _position_distances(sizes, p_norm) -> np.ndarray:
  """`sum_axis |i_axis - j_axis|^p` between all flattened positions."""
  grids = np.meshgrid(*[np.arange(s) for s in sizes], indexing='ij')
  coords = np.stack([g.reshape(-1) for g in grids], -1).astype(np.float64)
  if coords.shape[-1] == 0:
    return np.zeros((1, 1))
  diff = np.abs(coords[:, None, :] - coords[None, :, :])
  return np.sum(diff ** p_norm, axis=-1)


def _pos_emb_cov(sizes, p_norm, decay_fn, dtype) -> tf.Tensor:
  """`(P, P)` covariance of the positional embeddings."""
  size = int(np.prod(sizes, dtype=np.int64))
  if decay_fn is None:
    return tf.eye(size, dtype=dtype)
  d = tf.constant(_position_distances(sizes, p_norm), dtype)
  return tf.cast(decay_fn(d), dtype)


def _block_pair_weights(g: tf.Tensor, blocks: int):
  """Per block pair of a packed kernel, the attention weights of its row and
  of its column inputs.

  Args:
    g: `(N, P, P)` weights of each input.
    blocks: B (see `nt_gp.ops.packing`); the batch is padded like the
      packed kernel's, with copies of its first input.

  Returns:
    Two `(B (B + 1) / 2, N' / B, P, P)` tensors.

  Example:
    >>> rows, cols = _block_pair_weights(tf.reshape(tf.range(4.), (4, 1, 1)), 2)
    >>> rows[..., 0, 0].numpy().tolist(), cols[..., 0, 0].numpy().tolist()
    ([[0.0, 1.0], [0.0, 1.0], [2.0, 3.0]], [[0.0, 1.0], [2.0, 3.0], [2.0, 3.0]])
  """
  # `pair_variances` takes the batch last: `(P, P, N)` -> `(P, P, K, b)`.
  rows, cols = packing.pair_variances(tf.transpose(g, [1, 2, 0]), blocks)
  return (tf.transpose(rows, [2, 3, 0, 1]), tf.transpose(cols, [2, 3, 0, 1]))


@layer
@supports_masking(remask_kernel=True)
def GlobalSelfAttention(n_chan_out: int,
                        n_chan_key: int,
                        n_chan_val: int,
                        n_heads: int,
                        linear_scaling: bool = True,
                        W_key_std=1.0,
                        W_value_std=1.0,
                        W_query_std=1.0,
                        W_out_std=1.0,
                        b_std=None,
                        attention_mechanism: str = 'SOFTMAX',
                        pos_emb_type: str = 'NONE',
                        pos_emb_p_norm: float = 2,
                        pos_emb_decay_fn: Optional[Callable] = None,
                        n_chan_pos_emb: Optional[int] = None,
                        W_pos_emb_std=1.0,
                        val_pos_emb: bool = False,
                        batch_axis: int = 0,
                        channel_axis: int = -1):
  r"""Global scaled dot-product self-attention (multi-head).

  For each head ``h``, with keys ``K_h = x W^K_h``, queries ``Q_h`` and values
  ``V_h = x W^V_h`` (all NTK-parameterized), the head output is
  ``f(c Q_h K_h^T) V_h`` with ``f`` the `attention_mechanism` (softmax over
  the key positions by default). Heads are concatenated and mapped by
  ``W_out`` to `n_chan_out` channels, plus an optional bias.

  With `linear_scaling=True` the key-query product is scaled by
  ``1 / (n_chan_in n_chan_key)`` and queries share the key weights (so the
  infinite-width attention weights are not constant); with `False` it is
  scaled by ``1 / (n_chan_in sqrt(n_chan_key))`` with independent query
  weights, for which the kernel is only known with the `'IDENTITY'`
  mechanism.

  The kernel is the limit of infinitely many heads, key/value and input
  channels. Attention mixes all spatial positions (flattened, any number of
  spatial dimensions), so the layer needs full spatial covariances. Masked
  positions (`mask_constant`) are excluded from the keys.

  Args:
    n_chan_out: output channels.
    n_chan_key: channels of keys and queries (per head).
    n_chan_val: channels of values (per head).
    n_heads: number of heads.
    linear_scaling: see above.
    W_key_std, W_query_std: weight std of keys and queries (the kernel only
      depends on their product).
    W_value_std, W_out_std: weight std of values and of the output map (the
      kernel only depends on their product).
    b_std: bias std; `None` for no bias.
    attention_mechanism: `'SOFTMAX'`, `'IDENTITY'`, `'ABS'` or `'RELU'` (or an
      `AttentionMechanism`).
    pos_emb_type: `'NONE'`, `'SUM'` or `'CONCAT'` (or a
      `PositionalEmbedding`): Gaussian positional embeddings added to or
      concatenated with the inputs.
    pos_emb_p_norm: `p` of the distance ``sum_i |x_i - y_i|^p`` between
      positions passed to `pos_emb_decay_fn`.
    pos_emb_decay_fn: maps the distance tensor to the embeddings' covariance
      (e.g. ``lambda d: tf.exp(-d)``); `None` means independent embeddings per
      position (identity covariance).
    n_chan_pos_emb: embedding channels (default: the input channels; with
      `'SUM'` it must equal them).
    W_pos_emb_std: std of the embeddings.
    val_pos_emb: whether the embeddings also enter the values (otherwise only
      keys and queries).
    batch_axis, channel_axis: axes of the inputs.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`. `init_fn` gives the parameters
    ``(W_query or None, W_key, W_value, W_out, b or None, pos_emb or None)``
    with shapes ``(n_heads, C_keys, n_chan_key)``, ``(n_heads, C_vals,
    n_chan_val)``, ``(n_heads n_chan_val, n_chan_out)``; inputs are float32 or
    float64 arrays ``(N, *spatial, C)`` (subject to the axes) and the
    outputs have shape ``(N, *spatial, n_chan_out)`` and the input dtype.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> init_fn, apply_fn, kernel_fn = stax.serial(
    ...     stax.Dense(8), stax.GlobalSelfAttention(8, 4, 4, 2),
    ...     stax.GlobalAvgPool(), stax.Dense(1))
    >>> x = np.random.RandomState(0).randn(3, 5, 2)
    >>> tuple(kernel_fn(x, None, 'ntk').shape)
    (3, 3)
    >>> _, params = init_fn(0, x.shape)
    >>> tuple(apply_fn(params, x).shape)
    (3, 1)
  """
  for name, v in (('n_chan_out', n_chan_out), ('n_chan_key', n_chan_key),
                  ('n_chan_val', n_chan_val), ('n_heads', n_heads)):
    validation.check_positive_int(name, v)
  if n_chan_pos_emb is not None:
    validation.check_positive_int('n_chan_pos_emb', n_chan_pos_emb)
  mechanism = _as_enum(AttentionMechanism, attention_mechanism,
                       'attention_mechanism')
  pos_emb_type = _as_enum(PositionalEmbedding, pos_emb_type, 'pos_emb_type')
  if pos_emb_decay_fn is not None and not callable(pos_emb_decay_fn):
    raise TypeError('`pos_emb_decay_fn` must be callable or None.')
  if not np.isscalar(pos_emb_p_norm) or not pos_emb_p_norm > 0:
    raise ValueError(f'`pos_emb_p_norm` must be a positive number, got '
                     f'{pos_emb_p_norm!r}.')
  W_key_std = hparams.check_std('W_key_std', W_key_std)
  W_query_std = hparams.check_std('W_query_std', W_query_std)
  W_value_std = hparams.check_std('W_value_std', W_value_std)
  W_out_std = hparams.check_std('W_out_std', W_out_std)
  W_pos_emb_std = hparams.check_std('W_pos_emb_std', W_pos_emb_std,
                                    allow_zero=True)
  b_std = hparams.check_std('b_std', b_std, allow_none=True, allow_zero=True)
  use_pe = pos_emb_type != PositionalEmbedding.NONE
  weights_fn = _weights_fn(mechanism)

  def axes_of(ndim):
    ba, ca = batch_axis % ndim, channel_axis % ndim
    if ba == ca:
      raise ValueError('`batch_axis` and `channel_axis` must differ.')
    return ba, ca, [i for i in range(ndim) if i not in (ba, ca)]

  def pe_channels(c_in):
    c_pe = c_in if n_chan_pos_emb is None else n_chan_pos_emb
    if pos_emb_type == PositionalEmbedding.SUM and c_pe != c_in:
      raise ValueError(
          f'GlobalSelfAttention: `pos_emb_type="SUM"` adds the embeddings to '
          f'the inputs, so `n_chan_pos_emb` ({c_pe}) must equal the input '
          f'channels ({c_in}); use "CONCAT" or leave it None.')
    return c_pe

  def shape_fn(input_shape):
    ndim = len(input_shape)
    if ndim < 2:
      raise ValueError(f'GlobalSelfAttention needs inputs of rank >= 2, got '
                       f'shape {tuple(input_shape)}.')
    _, ca, _ = axes_of(ndim)
    if use_pe:
      pe_channels(input_shape[ca])
    return tuple(input_shape[:ca]) + (n_chan_out,) + tuple(
        input_shape[ca + 1:])

  def params_fn(key, input_shape):
    ndim = len(input_shape)
    ba, ca, _ = axes_of(ndim)
    k_q, k_k, k_v, k_o, k_b, k_pe = _random.split(key, 6)
    c_keys = c_vals = input_shape[ca]
    pos_emb = None
    if use_pe:
      c_pe = pe_channels(input_shape[ca])
      pe_shape = list(input_shape)
      pe_shape[ca] = c_pe
      pe_shape[ba] = 1
      pos_emb = _random.normal(k_pe, pe_shape)
      if pos_emb_type == PositionalEmbedding.CONCAT:
        c_keys += c_pe
        if val_pos_emb:
          c_vals += c_pe
    w_key = _random.normal(k_k, (n_heads, c_keys, n_chan_key))
    w_val = _random.normal(k_v, (n_heads, c_vals, n_chan_val))
    w_out = _random.normal(k_o, (n_chan_val * n_heads, n_chan_out))
    b = None
    if b_std is not None:
      b_shape = [1] * ndim
      b_shape[ca] = n_chan_out
      b = _random.normal(k_b, b_shape)
    w_query = (None if linear_scaling else
               _random.normal(k_q, (n_heads, c_keys, n_chan_key)))
    return w_query, w_key, w_val, w_out, b, pos_emb

  def apply_fn(params, inputs, mask=None, **kwargs):
    w_query, w_key, w_val, w_out, b, pos_emb = params
    x = tf.convert_to_tensor(inputs)
    dtype = x.dtype
    ndim = x.shape.rank
    shape_fn(tuple(x.shape))
    ba, ca, sp = axes_of(ndim)
    sizes = [x.shape[i] for i in sp]
    n = tf.shape(x)[ba]
    x_val = None
    if use_pe:
      pe = tf.cast(pos_emb, dtype)
      if pos_emb_decay_fn is not None:
        # Correlate the embeddings across positions: L L^T = R.
        chol = tf.linalg.cholesky(_pos_emb_cov(sizes, pos_emb_p_norm,
                                               pos_emb_decay_fn, dtype))
        flat = tf.reshape(tf.transpose(pe, [ba] + sp + [ca]),
                          [-1, pe.shape[ca]])
        flat = tf.matmul(chol, flat)
        canon = tf.reshape(flat, [1] + sizes + [pe.shape[ca]])
        pe = tf.transpose(canon, np.argsort([ba] + sp + [ca]).tolist())
      if mask is not None:
        m = tf.convert_to_tensor(mask)
        if m.shape[ca] != pe.shape[ca]:
          m = tf.reduce_all(m, axis=ca, keepdims=True)
        pe = tf.where(m, tf.zeros((), dtype), pe)
      pe = pe * hparams.cast(W_pos_emb_std, dtype)
      if pos_emb_type == PositionalEmbedding.SUM:
        x_val = None if val_pos_emb else x
        x = x + pe
      else:
        x_val = None if val_pos_emb else x
        target = tf.concat([tf.shape(x)[:ca], tf.shape(pe)[ca:ca + 1],
                            tf.shape(x)[ca + 1:]], 0)
        x = tf.concat([x, tf.broadcast_to(pe, target)], axis=ca)

    def flat(t):   # (N, P, C)
      t = tf.transpose(t, [ba] + sp + [ca])
      return tf.reshape(t, [n, -1, t.shape[-1]])

    x = flat(x)
    c_keys = x.shape[-1]
    if x_val is not None:
      x_val = flat(x_val)
    else:
      x_val = x
    c_vals = x_val.shape[-1]

    def project(t, w):   # (H, N, P, d)
      return tf.einsum('npc,hcd->hnpd', t, tf.cast(w, dtype))

    values = project(x_val, w_val)
    keys = project(x, w_key)
    queries = keys if linear_scaling else project(x, w_query)
    logits = tf.matmul(queries, keys, transpose_b=True)
    norm = c_keys * (n_chan_key if linear_scaling else n_chan_key ** 0.5)
    qk_std = hparams.cast(W_query_std, dtype) * hparams.cast(W_key_std, dtype)
    logits = logits * (qk_std / norm)
    if mask is not None:
      m = tf.reduce_all(tf.convert_to_tensor(mask), axis=ca, keepdims=True)
      m = tf.reshape(tf.transpose(m, [ba] + sp + [ca]), [1, n, 1, -1])
      fill = _NEG_INF if mechanism == AttentionMechanism.SOFTMAX else 0.
      logits = tf.where(m, tf.constant(fill, dtype), logits)
    heads = tf.matmul(weights_fn(logits), values)          # (H, N, P, V)
    heads = tf.transpose(heads, [1, 2, 3, 0])               # (N, P, V, H)
    heads = tf.reshape(heads, [n, tf.shape(heads)[1], -1])
    out = tf.matmul(heads, tf.cast(w_out, dtype))
    ov_std = hparams.cast(W_out_std, dtype) * hparams.cast(W_value_std, dtype)
    out = out * (ov_std / (n_chan_val * n_heads * c_vals) ** 0.5)
    out = tf.reshape(out, tf.concat([[n], sizes, [n_chan_out]], 0))
    out = tf.transpose(out, np.argsort([ba] + sp + [ca]).tolist())
    if b is not None:
      out = out + hparams.cast(b_std, dtype) * tf.cast(b, dtype)
    return out

  def kernel_map(nngp, ntk, cov1, cov2, m1, m2, r, qk_std, ov_std, b_std_t,
                 kern_w, pe_w, static):
    """The layer's kernel map on `(*batch, P, P)` matrices.

    Runs as ordinary TensorFlow ops, not as an XLA cluster: its cost is the
    batched matrix products, which TensorFlow's own kernels run as fast, and
    compiling it took ~0.2 s of every new input size's first call.
    """
    diagonal_batch, blocks = static
    # Squared once here, not in every use (operations to trace).
    b_var = None if b_std_t is None else tf.square(b_std_t)

    def mask_outer(a, b, pair):
      # Masks of covariance entries from (N, P) position masks.
      if a is None:
        return None
      if pair:
        return tf.logical_or(a[:, None, :, None], b[None, :, None, :])
      return tf.logical_or(a[:, :, None], b[:, None, :])

    def masked(t, m):
      return t if m is None else tf.where(m, tf.zeros((), t.dtype), t)

    def mix(t, rr):
      if t is None or rr is None:
        return t
      return kern_w * t + pe_w * rr

    r11 = r12 = r22 = None
    if use_pe:
      r11 = masked(r[None, None] if not diagonal_batch else r[None],
                   mask_outer(m1, m1, not diagonal_batch))
      r12 = masked(r[None, None], mask_outer(
          m1, m1 if m2 is None else m2, True))
      if cov2 is not None:
        r22 = masked(r[None, None] if not diagonal_batch else r[None],
                     mask_outer(m2, m2, not diagonal_batch) if m2 is not None
                     else mask_outer(m1, m1, not diagonal_batch))
    cov1_mix, cov2_mix = mix(cov1, r11), mix(cov2, r22)
    nngp_mix = mix(nngp, r12)
    ntk_mix = None if ntk is None else mix(ntk, r12)

    def affine(t, var):
      t = var * t
      return t if b_var is None else t + b_var

    if linear_scaling:
      def weighting(cov, m):
        if cov is None:
          return None
        if not diagonal_batch:
          cov = tf.transpose(tf.linalg.diag_part(tf.transpose(
              cov, [2, 3, 0, 1])), [2, 0, 1])               # (N, P, P)
        if m is not None:
          fill = _NEG_INF if mechanism == AttentionMechanism.SOFTMAX else 0.
          cov = tf.where(m[:, None, :], tf.constant(fill, cov.dtype), cov)
        return weights_fn(qk_std * cov)

      g1 = weighting(cov1_mix, m1)
      g2 = weighting(cov2_mix, m2)
      if blocks:
        # Packed `(K, b, b, P, P)` pairs: the weights of each block pair's
        # row and column inputs (padded like the batch).
        g_rows, g_cols = _block_pair_weights(g1, blocks)

      def weigh(t, ga, gb, pair):
        if t is None or t.shape.rank == 0:
          return t
        gb = ga if gb is None else gb
        if pair and blocks:
          return tf.matmul(g_rows[:, :, None],
                           tf.matmul(t, g_cols[:, None], transpose_b=True))
        if pair:
          t = tf.broadcast_to(t, static_shape.dims(ga, 0, 1) + static_shape.dims(gb, 0, 1) +
                             static_shape.dims(t, 2, None))
          # G_a T_ab G_b^T as two batched matrix products that broadcast the
          # (N, P, P) weights over the other batch axis: no transposed copies
          # of the covariance (an einsum of three operands made two).
          return tf.matmul(ga[:, None],
                           tf.matmul(t, gb[None], transpose_b=True))
        t = tf.broadcast_to(t, static_shape.dims(ga, 0, 1) + static_shape.dims(t, 1, None))
        return tf.einsum('npq,nqr,nsr->nps', ga, t, ga)

      src = (lambda mixed, plain: mixed) if val_pos_emb else (
          lambda mixed, plain: plain)
      ov_var = tf.square(ov_std)
      out_cov1 = affine(weigh(src(cov1_mix, cov1), g1, None,
                              not diagonal_batch), ov_var)
      out_cov2 = None if cov2 is None else affine(
          weigh(src(cov2_mix, cov2), g2, None, not diagonal_batch), ov_var)
      out_nngp = affine(weigh(src(nngp_mix, nngp), g1, g2, True), ov_var)
      out_ntk = None
      if ntk is not None:
        out_ntk = affine(weigh(src(ntk_mix, ntk), g1, g2, True), ov_var)
        out_ntk = out_ntk + 2 * (out_nngp if b_var is None else
                                 out_nngp - b_var)
      return out_nngp, out_ntk, out_cov1, out_cov2

    # Square-root scaling with the identity mechanism.
    def dot(a, b):
      if a is None:
        return None
      if b is None:
        return tf.reduce_sum(tf.square(a), axis=[-2, -1], keepdims=True)
      return tf.reduce_sum(a * b, axis=[-2, -1], keepdims=True)

    dot11 = dot(cov1_mix, None if val_pos_emb else cov1)
    dot12 = dot(nngp_mix, None if val_pos_emb else nngp)
    dot22 = dot(cov2_mix, None if val_pos_emb else cov2)
    std_var = tf.square(qk_std * ov_std)
    out_nngp = affine(dot12 * nngp_mix, std_var)
    out_cov1 = affine(dot11 * cov1_mix, std_var)
    out_cov2 = None if cov2 is None else affine(dot22 * cov2_mix, std_var)
    out_ntk = None
    if ntk_mix is not None:
      if val_pos_emb or not use_pe:
        t = 2 * dot(nngp_mix, ntk_mix)
      else:
        t = dot(nngp_mix, ntk) + dot(nngp, ntk_mix)
      out_ntk = affine(t * nngp_mix + dot12 * (ntk_mix + 4 * nngp_mix),
                       std_var)
    return out_nngp, out_ntk, out_cov1, out_cov2

  @requires(batch_axis=batch_axis, channel_axis=channel_axis,
            diagonal_spatial=Diagonal(input=Bool.NO))
  @capabilities(packed=True)
  def rule(k, **kwargs):
    if not linear_scaling and mechanism != AttentionMechanism.IDENTITY:
      raise NotImplementedError(
          f'GlobalSelfAttention: the infinite-width kernel with '
          f'`linear_scaling=False` is only known in closed form for the '
          f'"IDENTITY" attention mechanism, got "{mechanism.value}".')
    dtype = k.dtype
    ndim = len(k.shape1)
    ba, ca, sp = axes_of(ndim)
    sizes = [k.shape1[i] for i in sp]
    db = k.diagonal_batch
    kern_w = pe_w = r = None
    if use_pe:
      c_in = k.shape1[ca]
      c_pe = pe_channels(c_in)
      kern_w, pe_w = 1., 1.
      if pos_emb_type == PositionalEmbedding.CONCAT:
        kern_w = c_in / (c_in + c_pe)
        pe_w = c_pe / (c_in + c_pe)
      kern_w = tf.constant(kern_w, dtype)
      pe_w = pe_w * tf.square(hparams.cast(W_pos_emb_std, dtype))
      r = _pos_emb_cov(sizes, pos_emb_p_norm, pos_emb_decay_fn, dtype)

    def flat_mask(mask):                                 # (N, P)
      return None if mask is None else tf.reshape(mask, [mask.shape[0], -1])
    m1, m2 = (flat_mask(m) for m in k.position_masks())
    if m1 is None and m2 is not None:
      m1 = tf.zeros([k.shape1[ba], m2.shape[1]], tf.bool)
    if m2 is None and m1 is not None and k.cov2 is not None:
      m2 = tf.zeros([k.shape2[ba], m1.shape[1]], tf.bool)

    def to_m(t, batch_ndim):
      if t is None or t.shape.rank == 0:
        return t
      return spatial_matrix.to_matrix(t, sizes, batch_ndim)

    def from_m(t, batch_ndim):
      if t is None or t.shape.rank == 0:
        return t
      return spatial_matrix.from_matrix(t, sizes, batch_ndim)

    cb = 1 if db else 2
    # A symmetric block-packed kernel (x2 = x1) stays packed: the weighting
    # acts on each block pair as on a pair of inputs, over ~half the pairs.
    blocks = (packing.block_count(k.shape1[ba])
              if k.packed and linear_scaling else None)
    if k.packed and not blocks:
      k = k.unpack()
    nb = 3 if blocks else 2
    qk_std = (hparams.cast(W_query_std, dtype, 'W_query_std', positive=True) *
              hparams.cast(W_key_std, dtype, 'W_key_std', positive=True))
    ov_std = (hparams.cast(W_out_std, dtype, 'W_out_std', positive=True) *
              hparams.cast(W_value_std, dtype, 'W_value_std', positive=True))
    b_t = hparams.cast(b_std, dtype)
    nngp, ntk, cov1, cov2 = kernel_map(
        to_m(k.nngp, nb), to_m(k.ntk, nb), to_m(k.cov1, cb), to_m(k.cov2, cb),
        m1, m2, r, qk_std, ov_std, b_t, kern_w, pe_w, (db, blocks))
    return k.replace(nngp=from_m(nngp, nb), ntk=from_m(ntk, nb),
                     cov1=from_m(cov1, cb), cov2=from_m(cov2, cb),
                     is_gaussian=True, is_input=False)

  def mask_fn(mask, input_shape):
    return tf.reduce_all(mask, axis=channel_axis, keepdims=True)

  return make_init_fn(shape_fn, params_fn), apply_fn, rule, mask_fn
