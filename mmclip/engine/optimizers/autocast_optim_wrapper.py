"""bf16 mixed-precision training on any device, CPU included.

mmengine's ``AmpOptimWrapper`` refuses to start without an accelerator, and its gradient
scaler only matters for float16, whose narrow exponent lets small gradients underflow.
bfloat16 has float32's exponent range, so autocast alone is enough: no loss scaling.
"""
from contextlib import contextmanager

from mmengine.optim import OptimWrapper
from torch import nn

from mmclip.registry import OPTIM_WRAPPERS
from mmclip.utils import autocast_context


@OPTIM_WRAPPERS.register_module()
class BF16AutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward pass (``model.train_step``'s ``optim_context``) runs
    under ``torch.autocast(<the model's device type>, torch.bfloat16)``.

    Config: ``optim_wrapper = dict(type='BF16AutocastOptimWrapper', optimizer=...)``;
    every other key is ``OptimWrapper``'s. Parameters, gradients and the optimizer state
    stay in float32.
    """

    @contextmanager
    def optim_context(self, model: nn.Module):
        device = next(model.parameters()).device
        with super().optim_context(model), autocast_context(device, 'bf16'):
            yield

