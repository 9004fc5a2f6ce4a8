"""The Evaluate tab: the pane (view.py) over its presenter (presenter.py); the worker is core.eval.worker."""
