"""crowdmesh.roles."""

__all__: list[str] = []
