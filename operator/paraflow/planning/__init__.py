"""Pure planning: everything the operator decides, as functions of what it observed.

No I/O, no clients, no clocks (``now`` is passed in): unit- and property-testable without a
cluster. import-linter keeps it that way.
"""
