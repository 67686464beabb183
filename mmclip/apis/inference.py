"""Image classification inference: build once, preprocess with the config's test pipeline.

Inputs may be image paths, numpy arrays (uint8 [H, W], [H, W, 1], [H, W, 3] or
[H, W, 4]; BGR by default, the OpenMMLab / cv2 convention, or ``channel_order='rgb'``)
or PIL images (always RGB). Whatever the input, the image reaches the pipeline as the
uint8 BGR array ``LoadImageFromFile`` would have produced, so a path, the same image as
an array and as a PIL image give the same prediction.
"""
import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from mmengine.utils import ProgressBar
from PIL import Image
from torch import nn

from mmclip.datasets.transforms import build_test_pipeline, pil_to_rgb
from mmclip.models.heads.vision_transformer_head import scores_from_logits
from mmclip.registry import INFERENCERS
from mmclip.utils import autocast_context, check_device, check_precision, maybe_compile
from mmclip.utils.errors import ZeroShotError

from .backends import EXPORTED, choose_backend
from .model_zoo import (
    ModelSpec,
    Pretrained,
    Prompts,
    check_class_names,
    get_model,
    is_zero_shot,
    resolve_config,
    with_prompts,
)

ImageType = Union[str, os.PathLike, np.ndarray, Image.Image]
CHANNEL_ORDERS = ('bgr', 'rgb')


class NonFiniteOutputError(ValueError):
    """The model's outputs are NaN / Inf for an ordinary image: its weights are broken."""


def class_scores(model: torch.nn.Module, logits: torch.Tensor) -> torch.Tensor:
    """Logits [B, K] -> float32 scores [B, K]: the head's own ``scores`` where it has one
    (a SigLIP zero-shot head: each class's sigmoid), or an exported model's (as its head
    scored), else softmax over the classes."""
    to_scores = (getattr(getattr(model, 'head', None), 'scores', None)
                 or getattr(model, 'scores', None))
    return scores_from_logits(logits) if to_scores is None else to_scores(logits)


def check_logits(logits: torch.Tensor, classes: Optional[Sequence[str]],
                 weights: str) -> None:
    """Refuse class names that do not match the logits [B, K] and NaN / Inf logits, naming
    ``weights`` (the checkpoint or model file the names and weights came from).

    Finite but huge weights pass the loader's NaN / Inf check and overflow in the forward
    pass; softmax of such logits is NaN, and argmax / topk of NaN reports label 0 as if
    it were a prediction."""
    if classes is not None:
        check_class_names(classes, logits.shape[-1], weights)
    if not bool(torch.isfinite(logits).all()):
        raise NonFiniteOutputError(
            f'{weights}: the model outputs NaN or Inf for an image; the checkpoint\'s weights '
            f'are finite but too large to compute with (broken or not for this model).')


def _array_to_bgr(img: np.ndarray, channel_order: str, index: int) -> np.ndarray:
    """uint8 [H, W(, 1|3|4)] in ``channel_order`` -> contiguous uint8 [H, W, 3] BGR.

    Gray is repeated over three channels and alpha dropped, as PIL's ``convert('RGB')``
    does for files.
    """
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (
            img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise ValueError(f'Input {index}: expected a uint8 array of shape [H, W], [H, W, 1], '
                         f'[H, W, 3] or [H, W, 4]; got {img.dtype} {img.shape}.')
    if img.ndim == 2 or img.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(img.reshape(*img.shape[:2], 1), 3, axis=2))
    img = img[..., :3]
    return np.ascontiguousarray(img if channel_order == 'bgr' else img[..., ::-1])


def _exported_model(model: ModelSpec, onnx_file: str, device: str, precision: str,
                    backend: str) -> nn.Module:
    """The ``.onnx`` file run by ``backend``, with ``model``'s config (its test pipeline)."""
    from mmclip.deployment import build_exported_classifier
    return build_exported_classifier(backend, resolve_config(model)[0], onnx_file, device,
                                     precision=precision)


def _default_device(model: Union[ModelSpec, nn.Module]) -> str:
    if isinstance(model, nn.Module):
        return str(next(model.parameters()).device)
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def _weights_name(model: nn.Module, pretrained: Pretrained, backend: str) -> str:
    """How messages name the weights of a built ``model``: its checkpoint or .onnx file."""
    if backend != 'torch':
        return os.fspath(pretrained)
    return getattr(model, 'weights_source', None) or 'the model (no checkpoint loaded)'


@INFERENCERS.register_module()
class ImageClassificationInferencer:
    """Classify images with a model that is built (and its weights loaded) once.

    Args:
        model: a zoo name, a config path, a ``Config``, or a model returned by
            ``get_model`` (it carries its config as ``model.cfg``; it is put in eval mode).
        pretrained: as for ``get_model``; ``True`` (the zoo weights) by default. Ignored
            when ``model`` is already built.
        device: default: a built model's own device; otherwise ``'cuda'`` when
            available, else ``'cpu'``.
        precision: ``'fp32'``, ``'bf16'`` or ``'fp16'`` (CUDA only): autocast of the
            forward pass (``mmclip.utils.autocast_context``).
        compile: ``torch.compile`` the model (the first batch of each shape is slow).
        classes: zero-shot models only: the classes to classify into (its head is built
            from them; a built model is copied, not changed). Default: the model's own.
        templates: zero-shot models only: prompt templates with one ``{}`` (default: the
            model's own, OpenAI's 80 ImageNet templates for the zoo configs).
        class_names: the names of the model's outputs, one per class, for ``pred_class``.
            Default: a zero-shot model's classes, else ``model.dataset_meta['classes']``.
        backend: ``'torch'``, or ``'onnxruntime'`` / ``'openvino'`` to run ``pretrained``,
            an ``.onnx`` from ``tools/deployment/pytorch2onnx.py`` (fp32; bf16 too in
            OpenVINO; ``device`` default 'cpu'), with ``model`` (a name or config) giving
            the test pipeline. Default: for an ``.onnx`` on the CPU 'openvino' where its
            extra is installed, else 'onnxruntime'; 'torch' otherwise
            (``mmclip.apis.backends.choose_backend`` decides, for every tool too).
        **overrides: model-config overrides passed to ``get_model``.

    Calling it returns one dict per image, in input order: ``pred_label`` (int),
    ``pred_score`` (float, the top score: softmax, or sigmoid for SigLIP's zero-shot
    heads), ``pred_class`` (its class name, or
    None when the model has no class names) and ``pred_scores`` (float32 [num_classes],
    in the order of the classes).
    """

    def __init__(self,
                 model: Union[ModelSpec, nn.Module],
                 pretrained: Pretrained = True,
                 device: Optional[str] = None,
                 precision: str = 'fp32',
                 compile: bool = False,
                 classes: Prompts = None,
                 templates: Prompts = None,
                 class_names: Optional[Sequence[str]] = None,
                 backend: Optional[str] = None,
                 **overrides) -> None:
        if isinstance(model, nn.Module) and not hasattr(model, 'cfg'):
            raise ValueError('A built model must come from mmclip.get_model (it carries its '
                             'config as model.cfg); or pass a name or a config.')
        if isinstance(model, nn.Module) and backend in EXPORTED:
            raise ValueError(f"backend={backend!r} takes a zoo name or a config (for the test "
                             "pipeline), not a built torch model.")
        backend = choose_backend(None if isinstance(model, nn.Module) else pretrained,
                                 backend, precision, compile, device=device)
        exported = backend != 'torch'
        device = device or ('cpu' if exported else _default_device(model))
        check_precision(precision, device)
        zero_shot = is_zero_shot(model)
        if (classes is not None or templates is not None) and not zero_shot:
            name = 'this model' if isinstance(model, nn.Module) else repr(model)
            option = 'classes=' if classes is not None else 'templates='
            raise ZeroShotError(f'{option} chooses what a zero-shot model (image and text '
                                f'towers) classifies into; {name} is a vision-only '
                                f'classifier. To name its outputs, pass class_names=; to '
                                f'classify into new classes, use a zero-shot model '
                                f'(mmclip.list_models("*zeroshot*")).')
        prompts = dict(classes=classes, templates=templates) if zero_shot else {}
        if exported:
            if prompts and (classes is not None or templates is not None):
                raise ZeroShotError('An exported zero-shot model classifies into the classes '
                                    'it was exported with; classes= and templates= need '
                                    "backend='torch'.")
            self.model = _exported_model(model, pretrained, device, precision, backend)
        elif isinstance(model, nn.Module):
            if zero_shot and (classes is not None or templates is not None):
                model = with_prompts(model, classes, templates)
            check_device(device)
            self.model = model.to(device).eval()
        else:
            self.model = get_model(model, pretrained=pretrained, device=device, **prompts,
                                   **overrides)
        self.device, self.precision = device, precision
        self.weights = _weights_name(self.model, pretrained, backend)
        self.classes = tuple(class_names) if class_names is not None else (
            getattr(self.model, 'dataset_meta', {}).get('classes'))
        num_classes = getattr(getattr(self.model, 'head', None), 'num_classes', None)
        if class_names is not None and num_classes is not None and len(
                class_names) != num_classes:
            raise ValueError(f'class_names= has {len(class_names)} names for a model with '
                             f'{num_classes} classes; give one name per class.')
        self._forward = maybe_compile(self.model, compile)
        self._file_pipeline, self._array_pipeline = build_test_pipeline(self.model.cfg)

    def _prepare(self, image: ImageType, channel_order: str, index: int) -> dict:
        if isinstance(image, (str, os.PathLike)):
            return self._file_pipeline(dict(img_path=os.fspath(image)))
        if isinstance(image, Image.Image):
            image, channel_order = pil_to_rgb(image), 'rgb'
        if not isinstance(image, np.ndarray):
            raise TypeError(f'Input {index}: expected a path, a numpy array or a PIL image; '
                            f'got {type(image).__name__}.')
        img = _array_to_bgr(image, channel_order, index)
        return self._array_pipeline(dict(img=img, img_shape=img.shape[:2],
                                         ori_shape=img.shape[:2]))

    @torch.no_grad()
    def _scores(self, batch: List[dict]) -> np.ndarray:
        """Pipeline outputs -> scores, float32 [B, num_classes]: softmax, or the head's own
        (``scores``: a SigLIP zero-shot head's per-class sigmoid)."""
        data = self.model.data_preprocessor(pseudo_collate(batch), False)
        with autocast_context(self.device, self.precision):
            logits = self._forward(data['inputs'])
        check_logits(logits, self.classes, self.weights)
        return class_scores(self.model, logits).cpu().numpy()

    def _result(self, scores: np.ndarray) -> Dict[str, Any]:
        label = int(scores.argmax())
        return dict(pred_label=label,
                    pred_score=float(scores[label]),
                    pred_class=self.classes[label] if self.classes else None,
                    pred_scores=scores)

    def __call__(self,
                 inputs: Union[ImageType, Sequence[ImageType]],
                 batch_size: int = 1,
                 channel_order: str = 'bgr',
                 show_progress: bool = True) -> List[Dict[str, Any]]:
        """Classify one image or a list of images (run ``batch_size`` at a time).

        Args:
            inputs: a path, array or PIL image, or a list of them.
            batch_size: images per forward pass.
            channel_order: channel order of numpy array inputs, ``'bgr'`` or ``'rgb'``.
            show_progress: a progress bar when there is more than one batch.

        Returns:
            A list with one result dict per image, in input order.
        """
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f'channel_order must be one of {CHANNEL_ORDERS}; '
                             f'got {channel_order!r}.')
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'batch_size must be a positive int; got {batch_size!r}.')
        images = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        starts = range(0, len(images), batch_size)
        bar = ProgressBar(len(images)) if show_progress and len(starts) > 1 else None
        results = []
        for start in starts:
            chunk = images[start:start + batch_size]
            batch = [self._prepare(img, channel_order, start + i) for i, img in enumerate(chunk)]
            results += [self._result(row) for row in self._scores(batch)]
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.file.write('\n')
        return results


_LAST_INFERENCER: Dict[tuple, ImageClassificationInferencer] = {}


def _cache_key(model, pretrained, device, precision, compile, classes, templates,
               class_names, backend) -> Optional[tuple]:
    """A key for models named by a string or path; built models and Configs get none."""
    if not isinstance(model, (str, os.PathLike)):
        return None
    if isinstance(pretrained, os.PathLike):
        pretrained = os.fspath(pretrained)
    prompts = tuple(None if p is None else p if isinstance(p, str) else tuple(p)
                    for p in (classes, templates, class_names))
    return os.fspath(model), pretrained, device, precision, compile, prompts, backend


def inference_model(model: Union[ModelSpec, nn.Module],
                    images: Union[ImageType, Sequence[ImageType]],
                    pretrained: Pretrained = True,
                    device: Optional[str] = None,
                    batch_size: int = 1,
                    channel_order: str = 'bgr',
                    precision: str = 'fp32',
                    compile: bool = False,
                    classes: Prompts = None,
                    templates: Prompts = None,
                    class_names: Optional[Sequence[str]] = None,
                    backend: Optional[str] = None) -> Union[Dict[str, Any], List[Dict[str, Any]]]:
    """Classify ``images`` with ``model``: one result dict, or a list for a list.

    ``model`` is a zoo name, a config path, a Config or a model from ``get_model``.
    For a zero-shot model, ``classes`` (and ``templates``) choose what to classify into:
    ``pred_class`` is one of ``classes`` and ``pred_scores`` follows their order;
    ``class_names`` names the outputs of any model (see ``ImageClassificationInferencer``).
    Repeated calls with the same model name or config path (and the same options) reuse
    the model built by the first call instead of building and loading it again. For
    more control, keep an ``ImageClassificationInferencer``. ``backend='onnxruntime'`` or
    ``'openvino'`` runs an exported model: ``pretrained='model.onnx'``.

    Example::

        result = inference_model('vit-base-p32_clip-laion2b-in12k-pre_3rdparty_in1k',
                                 'demo/cat.jpg')
        result['pred_class'], result['pred_score']

        result = inference_model('clip_vit-base-p16_openai_zeroshot-cls_in1k', 'demo/cat.jpg',
                                 classes=['cat', 'dog', 'rocket'])
    """
    key = _cache_key(model, pretrained, device, precision, compile, classes, templates,
                     class_names, backend)
    inferencer = _LAST_INFERENCER.get(key) if key is not None else None
    if inferencer is None:
        inferencer = ImageClassificationInferencer(model, pretrained, device, precision, compile,
                                                   classes, templates, class_names,
                                                   backend=backend)
        _LAST_INFERENCER.clear()  # keep at most one model alive
        if key is not None:
            _LAST_INFERENCER[key] = inferencer
    results = inferencer(images, batch_size=batch_size, channel_order=channel_order)
    return results if isinstance(images, (list, tuple)) else results[0]
