"""The Curves tab: the pane (view.py) over its presenter (presenter.py), and the rollout browser
(rollout_browser.py)."""
