from .layer_decay_optim_wrapper_constructor import (LearningRateDecayOptimWrapperConstructor,
                                                    get_layer_id_for_vit)

__all__ = ['LearningRateDecayOptimWrapperConstructor', 'get_layer_id_for_vit']
