"""crowdmesh.daemon: the I/O layer that wires the pure core into a long-running node."""

from crowdmesh.daemon.keystore import KeyEntry, Keystore

__all__ = ["KeyEntry", "Keystore"]
