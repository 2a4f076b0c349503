"""How a plan is decided: the joint batch optimum, its budget mirror, and the per-call price.

``policy="strict"`` is the joint policy with N = 1. Each is a module of functions over a
:class:`~eccos_core.planner.Planner` (its pool, targets and per-call streams); the planner prepares the inputs and
picks the policy.
"""
