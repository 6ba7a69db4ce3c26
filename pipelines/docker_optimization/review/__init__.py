"""What a change may touch, and whether it keeps the build sound."""
