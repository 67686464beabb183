"""The Runner's visualizer for what testing and training record: the config and scalars."""
import os.path as osp
from typing import Dict, List, Optional

from mmengine.config import Config
from mmengine.dist import master_only
from mmengine.utils import ManagerMixin
from mmengine.visualization.vis_backend import BaseVisBackend

from mmclip.registry import VISBACKENDS, VISUALIZERS


@VISUALIZERS.register_module()
class ScalarVisualizer(ManagerMixin):
    """Records the config and scalars in its vis backends, and draws nothing.

    mmengine's ``Visualizer`` builds a matplotlib figure when it is made (importing
    matplotlib: about 0.7 s of every Runner's start), although mmclip's runs only log
    scalars; this one offers the methods the Runner and its logger hook call. For drawing,
    set ``visualizer = dict(type='Visualizer', ...)`` in a config.

    Config keys:
        name: the instance name (the Runner sets the experiment's).
        vis_backends: a list of vis-backend configs, e.g. ``[dict(type='LocalVisBackend')]``;
            each may have a ``name`` (default: its type).
        save_dir: their folder's parent (the Runner sets its log dir; backends write into
            ``save_dir/vis_data``).
    """

    def __init__(self,
                 name: str = 'visualizer',
                 vis_backends: Optional[List[dict]] = None,
                 save_dir: Optional[str] = None) -> None:
        super().__init__(name)
        self.dataset_meta: Optional[dict] = None  # set by the loops; nothing is drawn with it
        self.backends: Dict[str, BaseVisBackend] = {}
        for cfg in vis_backends or []:
            cfg = dict(cfg)
            backend_name = cfg.pop('name', None) or str(cfg['type'])
            if backend_name in self.backends:
                raise ValueError(f'ScalarVisualizer: two vis_backends are named '
                                 f'{backend_name!r}; give each a distinct name.')
            if save_dir is not None:
                cfg.setdefault('save_dir', osp.join(save_dir, 'vis_data'))
            self.backends[backend_name] = VISBACKENDS.build(cfg)

    @master_only
    def add_config(self, config: Config, **kwargs) -> None:
        for backend in self.backends.values():
            backend.add_config(config, **kwargs)

    @master_only
    def add_scalar(self, name: str, value: float, step: int = 0, **kwargs) -> None:
        for backend in self.backends.values():
            backend.add_scalar(name, value, step, **kwargs)

    @master_only
    def add_scalars(self, scalar_dict: dict, step: int = 0, file_path: Optional[str] = None,
                    **kwargs) -> None:
        for backend in self.backends.values():
            backend.add_scalars(scalar_dict, step, file_path, **kwargs)

    def get_backend(self, name: str) -> Optional[BaseVisBackend]:
        return self.backends.get(name)

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
