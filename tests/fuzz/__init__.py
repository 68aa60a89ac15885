"""Fuzz targets for every surface that takes bytes from outside (docs/fuzzing.md).

``targets`` defines the surfaces and their allowed outcomes, ``mutate`` the deterministic
mutation engine, ``world`` the small real chain the targets validate against, ``engine`` the
loop that classifies outcomes. ``bench/fuzz.py`` runs the campaign; ``test_fuzz_smoke.py`` a
short run of every target in ``make test``.
"""
