"""mmengine's TestLoop with the forward pass at a chosen precision."""
from typing import Dict, List, Sequence, Union

import torch
from mmengine.runner import TestLoop

from mmclip.registry import LOOPS
from mmclip.utils import autocast_context, check_precision


@LOOPS.register_module()
class PrecisionTestLoop(TestLoop):
    """``TestLoop`` whose ``test_step`` runs under ``autocast_context(device, precision)``.

    mmengine's own loop only knows ``fp16=True`` (float16 on CUDA, bfloat16 on CPU);
    this one takes the precision by name, so bf16 on CUDA is a config key too.

    Config keys (``test_cfg = dict(type='PrecisionTestLoop', precision='bf16')``):
        precision: 'fp32', 'bf16' (CPU or CUDA) or 'fp16' (CUDA only).
    """

    def __init__(self,
                 runner,
                 dataloader: Union[torch.utils.data.DataLoader, Dict],
                 evaluator: Union[object, Dict, List],
                 precision: str = 'fp32') -> None:
        super().__init__(runner, dataloader, evaluator, fp16=False)
        self.device = next(runner.model.parameters()).device
        check_precision(precision, self.device)
        self.precision = precision

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: Sequence[dict]) -> None:
        self.runner.call_hook('before_test_iter', batch_idx=idx, data_batch=data_batch)
        with autocast_context(self.device, self.precision):
            outputs = self.runner.model.test_step(data_batch)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook(
            'after_test_iter', batch_idx=idx, data_batch=data_batch, outputs=outputs)
