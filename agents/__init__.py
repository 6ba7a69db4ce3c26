"""The six roles. Each is a small class: a context manager and a graph node body."""

from agents.analyst import Analyst
from agents.architect import Architect
from agents.implementer import Implementer
from agents.ops import Ops
from agents.planner import Planner
from agents.reviewer import Reviewer

AGENTS = {
    "analyst": Analyst,
    "planner": Planner,
    "architect": Architect,
    "implementer": Implementer,
    "reviewer": Reviewer,
    "ops": Ops,
}
