"""CO001 (no CPU limit) and its round-trip fix, which changes only the lines it adds."""

from __future__ import annotations

from engine.artifacts import Design
from tests.rulekit import codes, fixed

COMPOSE = """\
# the stack
services:
  api:
    image: "api:1"   # pinned by CI
    deploy:
      resources:
        limits:
          memory: 512M
  cache:
    image: 'redis:7'
    cpus: 0.5
"""


def test_co001_triggers_only_on_services_without_a_cpu_limit(tmp_path):
    assert codes(tmp_path, {"compose.yaml": COMPOSE}, "CO001") == [("compose.yaml", 3)]


def test_fix_adds_limits_from_the_memory_policy_and_keeps_every_other_byte(tmp_path):
    out = fixed(tmp_path, {"compose.yaml": COMPOSE}, "CO001", Design(policies={"host_cores": "4"}))
    assert out == {"compose.yaml": COMPOSE.replace(
        "          memory: 512M\n",
        "          memory: 512M\n          cpus: '0.5'\n        reservations:\n          cpus: '0.25'\n")}
