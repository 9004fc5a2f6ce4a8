"""The Config tab: the pane (view.py) over its presenter (presenter.py), the forms read from the config schema
(schema.py), pre-flight (preflight.py) and the Sweep dialog it opens (sweep_view.py over sweep_presenter.py)."""
