"""Runner machinery: optimizer-wrapper constructors, hooks, loops and the visualizer, in
mmclip's registries."""
from .hooks import *  # noqa: F401,F403
from .optimizers import *  # noqa: F401,F403
from .runner import *  # noqa: F401,F403
from .visualizer import ScalarVisualizer  # noqa: F401
