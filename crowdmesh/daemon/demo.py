"""Placeholder replaced by the crypto walk-through."""

if __name__ == "__main__":
    print("crowdmesh demo: not yet available")
