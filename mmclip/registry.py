"""mmclip's registries: children of mmengine's root registries, scope ``mmclip``.

``locations`` lets mmengine import the module that registers a type the first time a
config with ``default_scope='mmclip'`` asks for it, so ``MODELS.build(cfg)`` works after
``import mmclip`` alone.

Two kinds of children: those mmclip registers into, and those mmengine's Runner builds
from under the scope ``mmclip`` (optimizers, schedulers, samplers, visualisation
backends, weight initialisers, the DDP wrapper). mmclip registers nothing into the second kind, but
without them the Runner warns on every build that it found no ``mmclip`` registry.
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import INFERENCERS as MMENGINE_INFERENCERS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

__all__ = [
    'RUNNERS', 'LOOPS', 'HOOKS', 'OPTIM_WRAPPERS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'DATASETS',
    'TRANSFORMS', 'MODELS', 'BATCH_AUGMENTS', 'METRICS', 'VISUALIZERS', 'INFERENCERS',
    'OPTIMIZERS', 'PARAM_SCHEDULERS', 'DATA_SAMPLERS', 'VISBACKENDS', 'WEIGHT_INITIALIZERS',
    'MODEL_WRAPPERS'
]

# ---- mmclip registers into these -----------------------------------------------------------
RUNNERS = Registry('runner', parent=MMENGINE_RUNNERS, locations=['mmclip.engine'])
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, locations=['mmclip.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, locations=['mmclip.engine'])
OPTIM_WRAPPERS = Registry(
    'optim wrapper', parent=MMENGINE_OPTIM_WRAPPERS, locations=['mmclip.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    locations=['mmclip.engine'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, locations=['mmclip.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, locations=['mmclip.datasets'])
# The exported-model classifiers (ONNX Runtime, OpenVINO) are models too.
MODELS = Registry('model', parent=MMENGINE_MODELS,
                  locations=['mmclip.models', 'mmclip.deployment'])
# Mixup / CutMix run on whole batches inside the data preprocessor; mmengine has no
# such root registry, so this one stands alone.
BATCH_AUGMENTS = Registry('batch augment', locations=['mmclip.models'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, locations=['mmclip.evaluation'])
VISUALIZERS = Registry('visualizer', parent=MMENGINE_VISUALIZERS, locations=['mmclip.engine'])
INFERENCERS = Registry('inferencer', parent=MMENGINE_INFERENCERS, locations=['mmclip.apis'])

# ---- mmengine's Runner builds from these under the scope 'mmclip' --------------------------
OPTIMIZERS = Registry('optimizer', parent=MMENGINE_OPTIMIZERS)
PARAM_SCHEDULERS = Registry('parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS)
DATA_SAMPLERS = Registry('data sampler', parent=MMENGINE_DATA_SAMPLERS)
VISBACKENDS = Registry('vis_backend', parent=MMENGINE_VISBACKENDS)
WEIGHT_INITIALIZERS = Registry('weight initializer', parent=MMENGINE_WEIGHT_INITIALIZERS)
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS)
