"""The config's test pipeline, built for images given one at a time (the inferencer, the
prediction tool, ONNX verification)."""
from typing import Tuple

from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope

from mmclip.registry import TRANSFORMS


def build_test_pipeline(cfg: Config) -> Tuple[Compose, Compose]:
    """``(from a file, from an array)``: the test pipeline of ``cfg``
    (``test_dataloader.dataset.pipeline``, else ``test_pipeline``), and the same without its
    first step, ``LoadImageFromFile``, for images already decoded
    (``dict(img=BGR uint8 [H, W, 3], img_shape, ori_shape)``).

    Raises:
        ValueError: no test pipeline, or one that does not start with LoadImageFromFile.
    """
    steps = cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline')
    steps = steps or cfg.get('test_pipeline')
    if not steps:
        raise ValueError('The config has no test pipeline (test_dataloader.dataset.pipeline '
                         'or test_pipeline); the inferencer preprocesses with it.')
    if steps[0].get('type') != 'LoadImageFromFile':
        raise ValueError(f'The test pipeline must start with LoadImageFromFile; it starts '
                         f'with {steps[0].get("type")!r}.')
    with DefaultScope.overwrite_default_scope('mmclip'):
        transforms = [TRANSFORMS.build(step) for step in steps]
    return Compose(transforms), Compose(transforms[1:])
