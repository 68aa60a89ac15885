"""crowdmesh.daemon."""

__all__: list[str] = []
