"""The six roles. Each is a small class: a context manager and a graph node body."""

from agent_pipelines.agents.analyst import Analyst
from agent_pipelines.agents.architect import Architect
from agent_pipelines.agents.implementer import Implementer
from agent_pipelines.agents.ops import Ops
from agent_pipelines.agents.planner import Planner
from agent_pipelines.agents.reviewer import Reviewer

AGENTS = {
    "analyst": Analyst,
    "planner": Planner,
    "architect": Architect,
    "implementer": Implementer,
    "reviewer": Reviewer,
    "ops": Ops,
}
