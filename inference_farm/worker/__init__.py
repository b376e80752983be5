"""Where the model runs: start-up hooks, thin tasks, admission and deadlines, running stacked
groups, the worker's state and metrics, queue resync, the thread pool and pool files."""
