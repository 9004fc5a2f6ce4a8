"""MiniMind trainer core: model, tokenizer, data, training, inference, export and serving.

Never imports Qt; the studio talks to it through function calls and the trainer's event stream.
"""

__version__ = "0.1.0"
