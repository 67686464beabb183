"""mmengine's Visualizer without the matplotlib start-up cost when nothing is drawn."""
from typing import Optional

import numpy as np
from mmengine.visualization import Visualizer

from mmclip.registry import VISUALIZERS


class _FigureNotBuilt:
    """Stands in for the matplotlib figure until an image is set; answers ``get_dpi``."""

    def __init__(self, dpi: Optional[float]) -> None:
        self.dpi = dpi or 100  # matplotlib's default figure dpi

    def get_dpi(self) -> float:
        return self.dpi


@VISUALIZERS.register_module()
class LazyFigureVisualizer(Visualizer):
    """``Visualizer`` that builds its matplotlib figure when an image is first set.

    mmengine's builds it in ``__init__`` (importing matplotlib: about 0.7 s), and the
    Runner always builds a visualizer, although testing and training only log scalars
    through its ``vis_backends``. Config keys: those of ``Visualizer``.
    """

    def _initialize_fig(self, fig_cfg: dict) -> tuple:
        if getattr(self, '_figure_wanted', False):
            return super()._initialize_fig(fig_cfg)
        return None, _FigureNotBuilt(fig_cfg.get('dpi')), None

    def set_image(self, image: np.ndarray) -> None:
        if not getattr(self, '_figure_wanted', False):
            self._figure_wanted = True
            self.fig_save_canvas, self.fig_save, self.ax_save = self._initialize_fig(
                self.fig_save_cfg)
            self.dpi = self.fig_save.get_dpi()
        super().set_image(image)
