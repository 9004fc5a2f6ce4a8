"""LoRA fine-tuning: SFT data and loss, only the adapters train; checkpoints hold base + adapter separately."""
from __future__ import annotations

from pathlib import Path

from core.train.recipes.sft import SFTRecipe


class LoRARecipe(SFTRecipe):
    def prepare_model(self, model):
        from core.model.lora import apply_lora

        return apply_lora(model, self.options)  # LoraConfig: method_options

    def save_weights(self, ckpt_dir: Path) -> None:
        from safetensors.torch import save_file

        from core.model import io
        from core.model.lora import base_state_dict, save_adapter

        # model.safetensors = the frozen base under HF names (so any loader can read it), adapter beside it
        base_keys = set(base_state_dict(self.model))
        weights = {k: v for k, v in io.model_state_dict(self.model).items() if k in base_keys}
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        save_file(weights, str(ckpt_dir / io.WEIGHTS), metadata={"format": "pt"})
        self.model.config.save(ckpt_dir / io.MODEL_CONFIG)
        self.tokenizer.save(ckpt_dir / io.TOKENIZER_DIR)
        save_adapter(self.model, ckpt_dir)

    def load_weights(self, ckpt_dir: Path) -> None:
        from core.model import io
        from core.model.lora import load_adapter, lora_state_dict

        # the frozen base comes from the checkpoint itself, not from `init` (a run dir whose `latest` may have
        # moved since); the adapter tensors are placeholders here and load_adapter fills them
        state = io.read_weights(ckpt_dir / io.WEIGHTS)
        state.update(lora_state_dict(self.model))
        io.load_weights_into(self.model, state, str(ckpt_dir / io.WEIGHTS))
        load_adapter(self.model, ckpt_dir)


RECIPE = LoRARecipe
