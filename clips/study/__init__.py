"""Studies: every curriculum x seed under one parent, and the comparison report."""
