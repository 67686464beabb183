"""The model zoo: names from ``model-index.yml`` -> configs, weights and built models.

The index is read from the source checkout (``<repo>/model-index.yml``, so an editable
install sees edits at once) or, in an installed wheel, from the copy that ``setup.py``
puts in ``mmclip/.mim``.
"""
import copy
import difflib
import fnmatch
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.registry import DefaultScope
from torch import nn

from mmclip.checkpoint import CheckpointFormatError, load_checkpoint
from mmclip.datasets import imagenet_categories
from mmclip.models.classifiers import ZeroShotClassifier
from mmclip.models.utils.zero_shot import resolve_prompts
from mmclip.registry import MODELS
from mmclip.utils import check_device
from mmclip.utils.errors import ZeroShotError

_PACKAGE_DIR = Path(__file__).resolve().parents[1]
ModelSpec = Union[str, os.PathLike, Config]
Pretrained = Union[bool, str, os.PathLike, None]
Prompts = Union[str, Sequence[str], None]
ZERO_SHOT_TYPE = 'ZeroShotClassifier'


@dataclass(frozen=True)
class ModelInfo:
    """One ``Models`` entry of a metafile.

    Attributes:
        name: the model name (``vit-base-p32_clip-openai-pre_3rdparty_in1k``).
        config: absolute path of its config file.
        weights: the published checkpoint URL.
        sources: where ``pretrained=True`` looks, in order: ``weights``, then the
            original timm weights on the Hugging Face hub (converted when loaded).
        metadata: the metafile entry as parsed (Params, FLOPs, Results, ...).
    """
    name: str
    config: str
    weights: Optional[str]
    sources: Tuple[str, ...]
    metadata: dict


def model_index_path() -> Path:
    """``model-index.yml`` of the source checkout, else of the installed package."""
    checkout = _PACKAGE_DIR.parent
    candidates = [checkout / 'model-index.yml', _PACKAGE_DIR / '.mim' / 'model-index.yml']
    if not (checkout / 'configs').is_dir():
        candidates.pop(0)  # site-packages: never pick up a stray file beside the package
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f'mmclip cannot find its model index; looked for {[str(p) for p in candidates]}. '
        f'Reinstall mmclip (pip install -e . from a checkout, or the wheel).')


def _model_info(entry: dict, root: Path) -> ModelInfo:
    converted = entry.get('Converted From') or {}
    sources = tuple(url for url in (entry.get('Weights'), converted.get('Weights')) if url)
    return ModelInfo(name=entry['Name'], config=str(root / entry['Config']),
                     weights=entry.get('Weights'), sources=sources, metadata=entry)


@lru_cache(maxsize=1)
def _zoo() -> Dict[str, ModelInfo]:
    import yaml  # only when the zoo is first used
    index = model_index_path()
    root = index.parent
    zoo: Dict[str, ModelInfo] = {}
    for metafile in yaml.safe_load(index.read_text())['Import']:
        for entry in yaml.safe_load((root / metafile).read_text())['Models']:
            if entry['Name'] in zoo:
                raise ValueError(f'Model {entry["Name"]!r} is listed twice ({metafile}).')
            zoo[entry['Name']] = _model_info(entry, root)
    return zoo


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Sorted zoo model names, optionally filtered by a shell-style wildcard pattern.

    Example: ``list_models('*p16*384px')``.
    """
    names = sorted(_zoo())
    return names if pattern is None else fnmatch.filter(names, pattern)


def get_model_info(name: str) -> ModelInfo:
    """The zoo entry of ``name``; ``ValueError`` with the closest names if unknown."""
    zoo = _zoo()
    if name not in zoo:
        # cutoff 0: a short guess such as 'vit-b32' still gets its nearest names.
        close = difflib.get_close_matches(str(name), list(zoo), n=3, cutoff=0)
        hint = f' Did you mean {close}?' if close else ''
        raise ValueError(f'{name!r} is neither a model-zoo name nor a config file.{hint} '
                         f'See mmclip.list_models() for the {len(zoo)} names.')
    return zoo[name]


def _looks_like_a_path(spec: str) -> bool:
    """Zoo names have neither a folder nor a dot: 'configs/clip/x.pyy' is a mistyped file,
    and zoo names suggested for it would mislead."""
    return '/' in spec or os.sep in spec or '.' in spec


def resolve_config(model: ModelSpec) -> Tuple[Config, Optional[ModelInfo]]:
    """The config of ``model`` (a zoo name, a ``.py`` config path, or a ``Config``, which is
    deep-copied) and its zoo entry (None unless ``model`` is a zoo name).

    Raises:
        FileNotFoundError: no such config file, with the closest file names beside it.
        ValueError: neither a file nor a zoo name, with the closest zoo names.
    """
    if isinstance(model, Config):
        return copy.deepcopy(model), None
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f'model must be a zoo name, a config path or a Config; '
                        f'got {type(model).__name__}.')
    path = os.fspath(model)
    if os.path.isfile(path) or _looks_like_a_path(path):
        if not os.path.isfile(path):
            folder = Path(path).parent
            siblings = [p.name for p in folder.glob('*.py')] if folder.is_dir() else []
            close = difflib.get_close_matches(Path(path).name, siblings, n=3, cutoff=0.6)
            hint = f' Did you mean {close} (in {folder})?' if close else ''
            raise FileNotFoundError(f'Config file {path} does not exist.{hint} A model-zoo '
                                    f'name works too (mmclip.list_models()).')
        return Config.fromfile(path), None
    info = get_model_info(path)
    return Config.fromfile(info.config), info


def _weight_sources(pretrained: Pretrained, info: Optional[ModelInfo], model: ModelSpec
                    ) -> Tuple[str, ...]:
    if pretrained is None or pretrained is False:
        return ()
    if pretrained is True:
        if info is None or not info.sources:
            raise ValueError(f'pretrained=True needs a model-zoo name with published weights; '
                             f'{model!r} is not one. Pass pretrained=<path or URL>, or see '
                             f'mmclip.list_models().')
        return info.sources
    if isinstance(pretrained, (str, os.PathLike)):
        return (os.fspath(pretrained),)
    raise ValueError(f'pretrained must be False, True, a path or a URL; got {pretrained!r}.')


def _merged(base: Mapping, overrides: Mapping) -> ConfigDict:
    """``base`` with ``overrides`` merged in: dicts into dicts, anything else replaces
    (so ``arch='b'`` can become ``arch=dict(embed_dims=...)``)."""
    merged = ConfigDict(copy.deepcopy(dict(base)))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def check_class_names(classes, num_classes: Optional[int], source: str) -> Tuple[str, ...]:
    """``classes`` (read from ``source``, a checkpoint or model file) as a tuple of names,
    checked where they are used: a list or tuple of ``str``, one per class of the head
    (``num_classes``, when known). A plain string is not a list of names (it would index
    as characters), and a short list would name the wrong classes or fail mid-run."""
    per_class = f'one per class ({num_classes})' if num_classes is not None else 'one per class'
    if not isinstance(classes, (list, tuple)):
        raise CheckpointFormatError(f'{source}: the class names must be a list of strings, '
                                    f'{per_class}; got a {type(classes).__name__}.')
    bad = [type(c).__name__ for c in classes if not isinstance(c, str)]
    if bad:
        raise CheckpointFormatError(f'{source}: the class names must be a list of strings, '
                                    f'{per_class}; got a {type(classes).__name__} holding '
                                    f'{len(bad)} {bad[0]}.')
    if num_classes is not None and len(classes) != num_classes:
        raise CheckpointFormatError(f'{source}: {len(classes)} class names for a model with '
                                    f'{num_classes} classes.')
    return tuple(classes)


def _class_names(checkpoint, num_classes: Optional[int],
                 source: str) -> Optional[Tuple[str, ...]]:
    """Class names saved by training (``meta.dataset_meta.classes``, checked), else
    ImageNet's for a 1000-class head, else None."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    dataset_meta = meta.get('dataset_meta') if isinstance(meta, Mapping) else None
    classes = dataset_meta.get('classes') if isinstance(dataset_meta, Mapping) else None
    if classes is not None:
        return check_class_names(classes, num_classes, source)
    return imagenet_categories() if num_classes == 1000 else None


def is_zero_shot(model: Union[ModelSpec, nn.Module]) -> bool:
    """Whether ``model`` (built, or a zoo name / config) is a CLIP zero-shot classifier."""
    if isinstance(model, nn.Module):
        return isinstance(model, ZeroShotClassifier)
    return resolve_config(model)[0].model.get('type') == ZERO_SHOT_TYPE


def _prompt_overrides(cfg: Config, model: ModelSpec, classes: Prompts,
                      templates: Prompts) -> dict:
    """Validated ``head`` overrides for ``classes=`` / ``templates=`` (none if both None)."""
    if classes is None and templates is None:
        return {}
    if cfg.model.get('type') != ZERO_SHOT_TYPE:
        raise ZeroShotError(f'classes= / templates= need a zero-shot model (image and text '
                            f'towers); {model!r} is a vision-only classifier. Zero-shot models: '
                            f'{list_models("*zeroshot*")}.')
    head = cfg.model.head
    classes, templates = resolve_prompts(head.classes if classes is None else classes,
                                         head.templates if templates is None else templates)
    return dict(head=dict(classes=list(classes), templates=list(templates)))


def with_prompts(model: ZeroShotClassifier, classes: Prompts = None,
                 templates: Prompts = None) -> ZeroShotClassifier:
    """A copy of a built zero-shot ``model`` classifying into ``classes`` with
    ``templates`` (None: the model's own); ``model`` itself is not changed."""
    net = copy.deepcopy(model)
    overrides = _prompt_overrides(net.cfg, 'the model', classes, templates)
    net.cfg.model = _merged(net.cfg.model, overrides)
    net.set_classes(overrides['head']['classes'], overrides['head']['templates'])
    net.dataset_meta = dict(classes=net.classes)
    return net


def _say_weights_are_random(name: str) -> None:
    """A zoo name reads like the published model; without ``pretrained`` it is not, and
    its predictions would be noise with no sign of why."""
    print_log(f'{name}: random weights (pretrained=False); pass pretrained=True for the '
              f'published ones, or a checkpoint path.', logger='current', level=logging.INFO)


def get_model(model: ModelSpec,
              pretrained: Pretrained = False,
              device: Optional[str] = None,
              mirrors: Optional[Mapping[str, str]] = None,
              classes: Prompts = None,
              templates: Prompts = None,
              **overrides) -> nn.Module:
    """Build a model from the zoo, a config file or a Config, optionally with weights.

    Args:
        model: a zoo name (see ``list_models``), a ``.py`` config path or a ``Config``
            (deep-copied, never changed).
        pretrained: ``False`` (randomly initialised; for a zoo name one log line says
            so), ``True`` (the zoo weights: the
            published URL, then the original timm weights on the Hugging Face hub), or a
            local path / URL of a checkpoint (mmclip, mmpretrain or timm format).
        device: where to put the model (default: stays on the CPU).
        mirrors: URL prefix -> mirror prefix or local folder, merged over the
            ``MMCLIP_MIRRORS`` environment variable.
        classes: zero-shot models only: the class names to classify into (default: the
            config's, the 1000 ImageNet names); ``'imagenet'`` names that list.
        templates: zero-shot models only: prompt templates, each with one ``{}`` for the
            class name (default: the config's, OpenAI's 80 ImageNet templates, also
            named ``'openai_imagenet'``).
        **overrides: merged into the config's ``model`` dict, e.g.
            ``head=dict(num_classes=10)``.

    Returns:
        The model in eval mode, with ``model.cfg`` (the full config it was built from),
        ``model.weights_source`` (the loaded checkpoint, for messages, or None) and
        ``model.dataset_meta`` (``classes``: class names or None). A zero-shot model
        with weights has its head built (or read from the cache) already.

    Raises:
        ValueError: ``classes`` / ``templates`` for a vision-only model, an empty class
            list, a template without ``{}``, or a checkpoint with a text tower for a
            vision-only model.
        CheckpointFormatError: class names in the checkpoint that are not a list of
            strings, one per class of the head.
    """
    cfg, info = resolve_config(model)
    sources = _weight_sources(pretrained, info, model)
    cfg.model = _merged(cfg.model, overrides)
    cfg.model = _merged(cfg.model, _prompt_overrides(cfg, model, classes, templates))
    # As mmengine's Runner does: the top-level data_preprocessor is the model's.
    if cfg.get('data_preprocessor') is not None:
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    with DefaultScope.overwrite_default_scope('mmclip'):
        net = MODELS.build(cfg.model)
    checkpoint = load_checkpoint(net, sources, mirrors=mirrors) if sources else {}
    if not sources and info is not None and info.sources:
        _say_weights_are_random(info.name)
    num_classes = cfg.model.get('head', {}).get('num_classes')
    net.cfg = cfg
    net.weights_source = getattr(net, 'weights_source', None)  # set by the load
    net.dataset_meta = dict(classes=_class_names(checkpoint, num_classes, net.weights_source))
    if device is not None:
        check_device(device)
        net.to(device)
    if is_zero_shot(net):
        net.dataset_meta = dict(classes=net.classes)
        if sources and not net.head_built:
            net.build_head()
    return net.eval()
