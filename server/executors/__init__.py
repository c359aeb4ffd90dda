"""Where a job's processes run: the seam (base) and its implementations."""
