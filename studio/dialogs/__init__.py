"""Windows the main window opens beside its panes: the first-run guide (first_run.py) and File › Settings
(settings.py)."""
