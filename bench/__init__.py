"""Load benchmarks of the Connected Content API (`make bench`) and the save-to-live timing."""
