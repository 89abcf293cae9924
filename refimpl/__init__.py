"""refimpl: readable, verified reference implementations of Adam, ND-Adam and AdaL.

>>> import numpy as np, refimpl
>>> opt = refimpl.Adam(lr=1e-3)
>>> params = {"w": np.zeros(3), "b": np.ones(1)}
>>> state = opt.init(params)
>>> params, state = opt.step(params, {"w": np.ones(3), "b": -np.ones(1)}, state)
>>> state.t
1

Every optimizer is an immutable set of hyperparameters with two pure methods, ``init`` and
``step``; the book (``make book``) derives each algorithm and the tests verify every claim.
"""

from .adal import AdaL, AdaLState
from .adam import Adam, AdamState
from .backend import (BackendUnavailableError, get_backend, get_namespace, set_backend, to_numpy,
                      using_backend)
from .checkpoint import load_state, save_state
from .ndadam import NDAdam, NDAdamState
from .sgd import SGD, SGDState
from . import problems
from . import nn

__version__ = "0.1.0"

__all__ = [
    "Adam", "AdamState", "NDAdam", "NDAdamState", "AdaL", "AdaLState", "SGD", "SGDState",
    "save_state", "load_state",
    "set_backend", "get_backend", "get_namespace", "using_backend", "to_numpy", "BackendUnavailableError",
    "problems",
]
