"""Preference and RL building blocks: losses and advantages (losses.py), reward sources (rewards.py), rollouts
(rollout.py), scalar-head models and the SPO tracker (value.py), and the shared on-policy recipe base
(recipe_base.py). The method recipes live in core/train/recipes/{dpo,rm,ppo,grpo,spo}.py; docs/rl.md explains it.
"""
