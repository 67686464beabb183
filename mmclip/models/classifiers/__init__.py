from .image_classifier import ImageClassifier
from .zero_shot_classifier import ZeroShotClassifier

__all__ = ['ImageClassifier', 'ZeroShotClassifier']
