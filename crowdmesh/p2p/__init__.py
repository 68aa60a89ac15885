"""crowdmesh.p2p."""

__all__: list[str] = []
