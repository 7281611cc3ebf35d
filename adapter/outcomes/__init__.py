"""The trial's outcome measures: change from baseline per child, summarised per arm and site."""
