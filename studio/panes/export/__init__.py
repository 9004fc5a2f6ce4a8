"""The Export tab: the pane (view.py) over its presenter (presenter.py): GGUF and Hugging Face exports."""
