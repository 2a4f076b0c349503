"""Plan a small batch with the bundled default router: no API key, no network.

python examples/plan_offline.py
"""

from eccos_core import Router

QUESTIONS = [
    "What is 17 * 23?",
    "Write a Python function that returns the n-th Fibonacci number.",
    "Which planet has the most moons?",
    "Q: If all bloops are razzies and all razzies are lazzies, are all bloops lazzies? Answer yes or no.",
]

router = Router.default()
for alpha in (0.5, 0.6, 0.65):
    plan = router.plan(QUESTIONS, min_quality=alpha)
    print(
        f"min_quality {alpha}: {plan.status}, expected quality {plan.expected_quality:.3f}, "
        f"predicted cost ${plan.expected_cost:.7f}"
    )
    for question, entry in zip(QUESTIONS, plan.queries, strict=True):
        print(f"  {entry.model:<34} p={entry.p_success:.2f}  {question[:50]}")
