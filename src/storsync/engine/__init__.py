"""The sans-I/O core: paths, comparison, three-way reconciliation and the plan.

Nothing in this package touches a file, a socket or the clock: it takes snapshots and
returns a plan, so the promises of the sync are cheap to test by the thousand.
"""
