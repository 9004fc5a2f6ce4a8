"""The Chat tab: the pane (view.py) over its presenter (presenter.py): model list, streamed replies, compare."""
