"""Requirements of layers on their input kernels.

Every layer declares what its kernel rule needs from the kernel it receives
(`@requires(diagonal_spatial=Diagonal(...), batch_axis=..., ...)`; stored in
the rule's `RuleSpec`, see `nt_gp.stax.rule_spec`). Combinators fold these
declarations, so that the network as a whole computes only what its readout
needs: e.g. a CNN with a `Flatten` readout never forms the
location-by-location covariance, and only the batch diagonal of `cov1` is kept
unless a layer asks for more.
"""
import dataclasses
import enum
import functools
import operator
from typing import Callable, Dict, Optional

from nt_gp.kernel import Kernel
from nt_gp.stax import rule_spec

__all__ = ['Bool', 'Diagonal', 'requires', 'get_req', 'fuse_requirements',
           'DEFAULT_INPUT_REQ', 'combine_requirements']


class Bool(enum.IntEnum):
  """Three-valued logic for `Diagonal`: NO < MAYBE < YES."""
  NO = 0
  MAYBE = 1
  YES = 2

  def __and__(self, other: 'Bool') -> 'Bool':
    return Bool(min(int(self), int(other)))

  __rand__ = __and__


@dataclasses.dataclass(frozen=True)
class Diagonal:
  """Whether a layer allows its input / downstream outputs to be diagonal-only.

  `input`: may the input kernel keep only diagonal entries? YES, MAYBE (only if
  the discarded entries are zero anyway) or NO.
  `output`: may the kernels from this layer on keep only diagonals?

  `a >> b` is the requirement of `b` applied after `a` (serial composition);
  `a & b` of both applied to the same input (parallel branches).
  `bool(d)` says whether the diagonal-only layout is used.

  Example:
    >>> from nt_gp.stax import Diagonal, Bool
    >>> conv = Diagonal()                       # a convolution
    >>> flatten = Diagonal(output=Bool.YES)     # a Flatten readout
    >>> bool(conv >> flatten)
    True
    >>> bool(conv >> Diagonal(input=Bool.NO))   # a global pool needs all pairs
    False
  """
  input: Bool = Bool.YES
  output: Bool = Bool.NO

  def __rshift__(self, other: 'Diagonal') -> 'Diagonal':
    if self.output == Bool.YES:
      return self
    if self.output > Bool.NO and other.input > Bool.NO:
      inp = self.input
    elif self.output == Bool.NO and other.input < Bool.YES:
      inp = Bool.NO
    else:
      inp = Bool(min(self.input, other.input))
    return Diagonal(input=inp, output=other.output)

  def __lshift__(self, other: 'Diagonal') -> 'Diagonal':
    return other >> self

  def __and__(self, other: 'Diagonal') -> 'Diagonal':
    return Diagonal(input=self.input & other.input,
                    output=self.output & other.output)

  __rand__ = __and__

  def __bool__(self) -> bool:
    return self.input == Bool.YES and self.output > Bool.NO


DEFAULT_INPUT_REQ = {
    'diagonal_batch': True,
    'diagonal_spatial': False,
    'batch_axis': 0,
    'channel_axis': -1,
    'use_dropout': False,
    'mask_constant': None,
}

def get_req(f: Callable) -> Optional[Dict]:
  """The input requirements declared for a rule or a public `kernel_fn`
  (None for a function that is neither)."""
  spec = rule_spec.spec_of(f)
  return None if spec is None else dict(spec.requirements)


def requires(**static_reqs):
  """Decorator declaring what a layer's kernel rule needs from its input.

  Keys: `diagonal_batch` / `diagonal_spatial` (a `bool` or `Diagonal`),
  `batch_axis`, `channel_axis` (ints), `use_dropout`. The rule is checked
  against the incoming `Kernel` before it runs.

  Example:
    >>> from nt_gp.stax import requires, Diagonal
    >>> @requires(diagonal_spatial=Diagonal())
    ... def rule(k, **kwargs):
    ...   return k
  """
  def decorator(rule: Callable) -> Callable:
    @functools.wraps(rule)      # (also copies the rule's RuleSpec)
    def checked_rule(k, **kwargs):
      _check_kernel_meets(k, static_reqs, rule)
      return rule(k, **kwargs)
    return rule_spec.declare(checked_rule, requirements=static_reqs)
  return decorator


def _check_kernel_meets(k, reqs, rule):
  if not isinstance(k, Kernel):
    return
  name = getattr(rule, '__qualname__', str(rule))
  for key, v in reqs.items():
    if v is None:
      continue
    if key in ('diagonal_batch', 'diagonal_spatial'):
      needs_full = v is False or (isinstance(v, Diagonal) and v.input == Bool.NO)
      if getattr(k, key) and needs_full:
        raise ValueError(
            f'{name} needs the input kernel with `{key}=False`, but it was '
            f'computed with `{key}=True` and lacks the off-diagonal entries. '
            f'Recompute it with `{key}=False`.')
    elif key in ('batch_axis', 'channel_axis'):
      ndim = len(k.shape1)
      if getattr(k, key) != v % ndim:
        raise ValueError(
            f'{name} needs `{key}={v % ndim}` but the input has '
            f'`{key}={getattr(k, key)}` (activations of shape {k.shape1}).')


def combine_requirements(kernel_fns, fold) -> Dict:
  """Requirements of `serial` (`fold=operator.rshift`) or `parallel` (`and_`)."""
  req = {}
  for f in kernel_fns:
    for key, v in (get_req(f) or {}).items():
      if key == 'use_dropout':
        if key in req and req[key] != v:
          raise ValueError('`use_dropout` must be the same for the whole network.')
        req[key] = v
      elif key in ('batch_axis', 'channel_axis'):
        req.setdefault(key, v)
      elif key in ('diagonal_batch', 'diagonal_spatial'):
        if key in req:
          a, b = req[key], v
          if isinstance(a, bool) or isinstance(b, bool):
            req[key] = (bool(a) and bool(b)) if fold is operator.and_ else b
          else:
            req[key] = fold(a, b)
        else:
          req[key] = v
      else:
        req[key] = v
  return req


def fuse_requirements(kernel_fn_reqs: Dict, default_reqs: Dict,
                      **user_reqs) -> Dict:
  """Combines a network's requirements with user overrides and defaults.

  A user may ask for a *less* demanding layout than the network needs only if
  the network allows it; otherwise a `ValueError` says why.
  """
  reqs = dict(kernel_fn_reqs or {})
  for key, v_user in user_reqs.items():
    if v_user is None:
      continue
    if key in reqs and key in ('diagonal_batch', 'diagonal_spatial'):
      v_net = reqs[key]
      if v_user is True and (v_net is False or (
          isinstance(v_net, Diagonal) and v_net.input == Bool.NO)):
        raise ValueError(
            f'Asked for `{key}=True`, but this network needs the full '
            f'covariance (`{key}=False`): a layer in it mixes the entries that '
            f'a diagonal-only kernel would drop.')
    reqs[key] = v_user
  for key, v in default_reqs.items():
    reqs.setdefault(key, v)
    if key in ('batch_axis', 'channel_axis') and reqs[key] is None:
      reqs[key] = v     # the first layer takes any (`Flatten`): the default
  return reqs
