"""crowdmesh.chain."""

__all__: list[str] = []
