"""Training machinery: optimizer-wrapper constructors and hooks, in mmclip's registries."""
from .hooks import *  # noqa: F401,F403
from .optimizers import *  # noqa: F401,F403
