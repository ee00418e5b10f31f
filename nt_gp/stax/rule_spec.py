"""What a kernel rule needs and supports: one frozen record per rule.

A layer's kernel rule maps a batch-last `Kernel` to a `Kernel`. What `layer`
must know about it to run it is declared once, on the rule, by decorators:

* `requires(...)` (`nt_gp.stax.requirements`): what the rule needs of its
  input kernel (diagonal layouts, batch and channel axes, dropout);
* `supports_masking(remask_kernel)` (`nt_gp.stax.masking`): the layer is
  mask-aware, and whether covariances of masked positions are zeroed after
  it;
* `capabilities(packed=..., sets_shapes=...)`: the rule accepts
  symmetric block-packed kernels (`Kernel.packed`; other rules receive
  unpacked ones), and it sets the shapes of its outputs itself (combinators
  that run other layers);
* `runs(kernel_fn)`: the rule runs another layer's `kernel_fn` and has its
  needs and capabilities.

Each decorator replaces the rule's `RuleSpec` by an updated copy; `layer`
reads it with `spec_of` (and gives its public `kernel_fn` the same record,
which is how combinators learn what the layers they combine need).
"""
import dataclasses
import types
from typing import Any, Callable, Mapping, Optional

__all__ = ['RuleSpec', 'spec_of', 'declare', 'capabilities', 'runs']

_ATTR = '_nt_gp_rule_spec'


@dataclasses.dataclass(frozen=True)
class RuleSpec:
  """What a kernel rule needs of its input and what it supports.

  Attributes:
    requirements: what the rule needs of its input kernel, as declared with
      `requires` (keys `diagonal_batch`, `diagonal_spatial`, `batch_axis`,
      `channel_axis`, `use_dropout`); read-only.
    remask_kernel: None if the layer is not declared mask-aware; else
      whether covariances of masked positions are zeroed after it.
    packed: whether the rule accepts symmetric block-packed kernels.
    sets_shapes: whether the rule sets `shape1`/`shape2` of its outputs
      itself (otherwise `layer` infers them from the layer's `init_fn`).

  Example:
    >>> from nt_gp.stax import Diagonal, requires
    >>> @capabilities(packed=True)
    ... @requires(diagonal_spatial=Diagonal())
    ... def rule(k, **kwargs):
    ...   return k
    >>> spec = spec_of(rule)
    >>> spec.packed, sorted(spec.requirements), spec.sets_shapes
    (True, ['diagonal_spatial'], False)
  """
  requirements: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  remask_kernel: Optional[bool] = None
  packed: bool = False
  sets_shapes: bool = False

  def __post_init__(self):
    if not isinstance(self.requirements, types.MappingProxyType):
      object.__setattr__(self, 'requirements',
                         types.MappingProxyType(dict(self.requirements)))


def spec_of(fn: Callable) -> Optional[RuleSpec]:
  """The `RuleSpec` declared for a rule or a public `kernel_fn` (None if
  nothing was declared).

  Example:
    >>> from nt_gp import stax
    >>> spec_of(stax.serial(stax.Dense(1), stax.Relu())[2]).sets_shapes
    True
  """
  return getattr(fn, _ATTR, None)


def declare(fn: Callable, spec: Optional[RuleSpec] = None,
            **changes) -> Callable:
  """Gives `fn` a record: `spec` (default: its own, or an empty one) with
  `changes` applied; returns `fn`.

  Example:
    >>> rule = declare(lambda k, **kwargs: k, packed=True)
    >>> spec = spec_of(declare(rule, sets_shapes=True))
    >>> spec.packed, spec.sets_shapes, spec.remask_kernel
    (True, True, None)
  """
  spec = dataclasses.replace(spec or spec_of(fn) or RuleSpec(), **changes)
  setattr(fn, _ATTR, spec)
  return fn


def capabilities(packed: bool = False, sets_shapes: bool = False):
  """Declares what a rule supports (see `RuleSpec`).

  Example:
    >>> @capabilities(packed=True)
    ... def rule(k, **kwargs):
    ...   return k.scale(2.)
    >>> spec_of(rule).packed
    True
  """
  def decorator(rule: Callable) -> Callable:
    return declare(rule, packed=packed, sets_shapes=sets_shapes)
  return decorator


def runs(kernel_fn: Callable):
  """Declares a rule that runs another layer's public `kernel_fn`: it has
  that layer's requirements and packing support, and the shapes of its
  outputs are set by that layer.

  Example:
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.Dense(1, channel_axis=1)
    >>> @runs(kernel_fn)
    ... def rule(k, **kwargs):
    ...   return kernel_fn(k, **kwargs)
    >>> spec_of(rule).requirements['channel_axis'], spec_of(rule).sets_shapes
    (1, True)
  """
  inner = spec_of(kernel_fn) or RuleSpec()

  def decorator(rule: Callable) -> Callable:
    return declare(rule, requirements=inner.requirements, packed=inner.packed,
                   sets_shapes=True)
  return decorator
