from .autocast_optim_wrapper import BF16AutocastOptimWrapper
from .layer_decay_optim_wrapper_constructor import (
                                                    LearningRateDecayOptimWrapperConstructor,
                                                    get_layer_id_for_vit,
)

__all__ = ['BF16AutocastOptimWrapper', 'LearningRateDecayOptimWrapperConstructor',
           'get_layer_id_for_vit']
