"""Preference and RL building blocks: losses and advantages (losses.py), reward sources (rewards.py), rollouts
(rollout.py), scalar-head models and the SPO tracker (value.py). The method recipes and their shared on-policy
base live in core/train/recipes/ (onpolicy.py, dpo.py, rm.py, ppo.py, grpo.py, spo.py); docs/rl.md explains it.
"""
