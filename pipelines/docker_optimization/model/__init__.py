"""The parsed repository: Dockerfiles, compose files, ignore files, contexts, the build graph."""
