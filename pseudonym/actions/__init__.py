"""Actions: what a rule does to the value it matches. One module per family of actions.

Every module in this package is imported here, so adding an action is adding a module
(or a function to one) that uses ``@action``.
"""

from importlib import import_module
from pkgutil import iter_modules

from .base import REGISTRY, REMOVE, Action, ActionError, BuildContext, Options, action

for _m in iter_modules(__path__):
    if _m.name != "base":
        import_module(f"{__name__}.{_m.name}")

__all__ = ["REGISTRY", "REMOVE", "Action", "ActionError", "BuildContext", "Options", "action"]
