"""Launch targets (local, Slurm, SkyPilot), their launch files and the schedulers' commands. No Qt, no torch.

``targets``: the target models and ``targets.json``; ``launch_file``: the sbatch script and SkyPilot YAML;
``scheduler``: submit/cancel/status and the run folder's ``launch.json``; ``cluster_run``: the two together.
See docs/cluster.md.
"""
