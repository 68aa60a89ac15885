"""crowdmesh.crypto."""

__all__: list[str] = []
