"""The study's FHIR definitions, built from the protocol spec: the PlanDefinitions and
ActivityDefinitions of the arms, the CodeSystems and ValueSets, the sponsor's and sites'
Organizations and Locations, and the outcome Measures (adapter.outcomes), as one Bundle; and
their loading into a store."""
