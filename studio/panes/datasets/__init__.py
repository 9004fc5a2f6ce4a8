"""The Datasets tab: the pane (view.py) over its presenter (presenter.py), the paged preview's index (index.py) and
the Token caches tab (token_caches_view.py over token_caches_presenter.py)."""
