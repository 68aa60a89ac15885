"""Mining methods, backed by :class:`~crowdmesh.daemon.api.MiningService` only.

``generate`` mines, so it runs under :data:`GENERATE_TIMEOUT_FACTOR` times the server's
request timeout, and asks for at most :data:`MAX_GENERATE` blocks per call. It stops early, and
stops mining, when its client hangs up (the server cancels the call) or when ``set_mining``
switches mining ``off`` (the call fails with ``generate-cancelled``); see
:class:`crowdmesh.daemon.mining.BlockProducer`.
"""

from __future__ import annotations

from typing import Final, get_args

from crowdmesh.daemon.api import MiningMode
from crowdmesh.daemon.methods import Method, MethodTable, param_choice, param_int

__all__ = ["GENERATE_TIMEOUT_FACTOR", "MAX_GENERATE", "METHODS"]

MAX_GENERATE: Final = 10_000
GENERATE_TIMEOUT_FACTOR: Final = 20.0
MODES: Final[tuple[str, ...]] = get_args(MiningMode)

METHODS: Final[MethodTable] = {
    "set_mining": Method((("mode", param_choice(MODES)),),
                         lambda s, a: s.mining.set_mining(a[0]),
                         doc="off | continuous | on-demand"),
    "generate": Method((("n", param_int(1, MAX_GENERATE)),),
                       lambda s, a: s.mining.generate(a[0]),
                       timeout_factor=GENERATE_TIMEOUT_FACTOR,
                       doc="mine n blocks now; returns their hashes"),
}
