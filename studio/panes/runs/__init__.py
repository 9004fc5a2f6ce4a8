"""The Runs tab: the pane (view.py) over its presenter (presenter.py) and its three sub-tabs (tabs.py): History,
Lineage (lineage_view.py over lineage_presenter.py) and Compare (compare_view.py over compare_presenter.py)."""
