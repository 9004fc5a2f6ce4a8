"""The web demo: a Streamlit chat page (`app.py`), what it does apart from drawing (`chat.py`), its settings
(`.streamlit/config.toml`) and its launcher (`python -m webdemo`, `__main__.py`). See docs/quickstart.md."""

MODEL_ENV = "MINIMIND_MODEL"  # the operator's model, when not given with --model
