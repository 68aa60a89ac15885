"""crowdmesh.fl."""

__all__: list[str] = []
