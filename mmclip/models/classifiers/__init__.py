from .flyp_classifier import FLYPClassifier
from .image_classifier import ImageClassifier
from .zero_shot_classifier import ZeroShotClassifier

__all__ = ['FLYPClassifier', 'ImageClassifier', 'ZeroShotClassifier']
