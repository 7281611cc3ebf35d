"""`python -m adapter.cli`: the fhir-adapter console script, as tests and benchmarks run it."""
from adapter.cli import main

main()
