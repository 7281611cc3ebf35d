"""The treatment protocol as data: its spec (spec.py), the visit plan and schedule
(schedule.py), the sponsor's and sites' Organizations and Locations (organisations.py),
$apply of an arm for one child (apply.py, activities.py) and adherence to it (adherence.py)."""
