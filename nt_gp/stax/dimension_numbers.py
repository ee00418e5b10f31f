"""Padding modes and convolution dimension numbers (as in `jax.lax`)."""
import enum
import string
from typing import Optional, Sequence, Tuple

__all__ = ['Padding', 'conv_dimension_numbers', 'ConvSpec']


class Padding(enum.Enum):
  """Padding of convolutions and pooling: zero 'SAME'/'VALID', or periodic
  'CIRCULAR' (output size as with 'SAME')."""
  CIRCULAR = 'CIRCULAR'
  SAME = 'SAME'
  VALID = 'VALID'


def as_padding(padding) -> Padding:
  if isinstance(padding, Padding):
    return padding
  try:
    return Padding(str(padding).upper())
  except ValueError:
    raise ValueError(f'`padding` must be one of "SAME", "VALID", "CIRCULAR", '
                     f'got {padding!r}.') from None


_SPATIAL_LETTERS = ''.join(c for c in string.ascii_uppercase
                           if c not in 'NCIO')


def conv_dimension_numbers(n_spatial: int, channels_first: bool = False):
  """Default `(lhs_spec, rhs_spec, out_spec)`, e.g. ('NABC', 'ABIO', 'NABC')."""
  spatial = _SPATIAL_LETTERS[:n_spatial]
  lhs = 'NC' + spatial if channels_first else 'N' + spatial + 'C'
  return lhs, spatial + 'IO', lhs


class ConvSpec:
  """Parsed dimension numbers of an N-D convolution.

  Attributes:
    lhs, rhs, out: the specs.
    n_spatial: number of spatial dimensions.
    batch_axis, channel_axis: axes of the input.
    input_spatial: spatial letters in input order.
    filter_perm: for each input spatial dim, its index in `filter_shape`.
    out_perm: for each output spatial dim (output order), the input spatial
      dim it comes from.
  """

  def __init__(self, filter_shape: Sequence[int],
               dimension_numbers: Optional[Tuple[str, str, str]]):
    n = len(filter_shape)
    if n == 0:
      raise ValueError('`filter_shape` must have at least one dimension.')
    if dimension_numbers is None:
      dimension_numbers = conv_dimension_numbers(n)
    try:
      lhs, rhs, out = (str(s) for s in dimension_numbers)
    except (TypeError, ValueError):
      raise ValueError(f'`dimension_numbers` must be three strings such as '
                       f'("NHWC", "HWIO", "NHWC"), got {dimension_numbers!r}.'
                       ) from None
    rhs_spatial = [c for c in rhs if c not in 'IO']
    if (len(lhs) != n + 2 or len(rhs) != n + 2 or len(out) != n + 2 or
        sorted(lhs) != sorted(out) or 'N' not in lhs or 'C' not in lhs or
        'I' not in rhs or 'O' not in rhs or
        sorted(c for c in lhs if c not in 'NC') != sorted(rhs_spatial)):
      raise ValueError(
          f'`dimension_numbers` {dimension_numbers!r} do not describe a '
          f'{n}-D convolution (e.g. {conv_dimension_numbers(n)}).')
    self.lhs, self.rhs, self.out = lhs, rhs, out
    self.n_spatial = n
    self.batch_axis = lhs.index('N')
    self.channel_axis = lhs.index('C')
    self.input_spatial = [c for c in lhs if c not in 'NC']
    self.filter_perm = [rhs_spatial.index(c) for c in self.input_spatial]
    out_spatial = [c for c in out if c not in 'NC']
    self.out_perm = [self.input_spatial.index(c) for c in out_spatial]
    self.rhs_spatial = rhs_spatial

  def in_filter_order(self, values: Sequence[int]):
    """Reorders per-filter-dimension values to input spatial order."""
    return [values[p] for p in self.filter_perm]
