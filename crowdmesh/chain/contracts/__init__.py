"""crowdmesh.chain.contracts."""

__all__: list[str] = []
