"""Every built-in feature's method table, composed: what ``crowdmesh daemon`` serves by default.

A separate module from the package ``__init__`` because each feature table imports ``Method``
from there; composing them there would make an import cycle.
"""

from __future__ import annotations

from typing import Final

from crowdmesh.daemon.methods import (
    Method,
    account,
    chain,
    compose,
    crowdsfl,
    mining,
    node,
    peers,
    spatial,
)

__all__ = ["DEFAULT_METHODS"]

DEFAULT_METHODS: Final[dict[str, Method]] = compose(
    node.METHODS, peers.METHODS, chain.METHODS, mining.METHODS, account.METHODS,
    spatial.METHODS, crowdsfl.METHODS)
