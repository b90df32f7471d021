"""Build a tiny, randomly initialised Stable Diffusion 1.x pipeline in diffusers format, entirely offline, so
InvokeAI's real model probe, loader, text encoder, denoise loop and VAE decode run in tests without downloading
weights. The images it makes are noise; the code paths are real.

``shared/tools/make_tiny_sd.py``, restructured and kept in this repository because CI clones only this repository.
It runs as a script (``python make_tiny_sd.py OUT_DIR [--full]``) in a process of its own: it seeds torch's global
RNG and loads torch, diffusers and transformers, none of which the test process itself should carry.
``--full`` builds SD 1.5-sized components instead (860M-parameter UNet), for GPU timing.
"""

from __future__ import annotations

import json
import string
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def character_vocabulary() -> dict[str, int]:
    """A CLIP BPE vocabulary of single characters (no merges): it tokenises any ASCII prompt."""
    chars = sorted(set(string.printable) - set(string.whitespace))
    vocab: dict[str, int] = {}
    for suffix in ("", "</w>"):
        for c in chars:
            vocab.setdefault(c + suffix, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab


def build_tokenizer(vocab: dict[str, int]) -> CLIPTokenizer:
    with tempfile.TemporaryDirectory(prefix="tiny-sd-tokenizer-") as tmp:
        vocab_file, merges_file = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab))
        merges_file.write_text("#version: 0.2\n")
        return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)


def build_pipeline(full: bool) -> StableDiffusionPipeline:
    """The pipeline, seeded so every build has the same weights. The text encoder's hidden size is 768 in both
    variants, which is what makes InvokeAI's probe recognise the model as ``sd-1``."""
    torch.manual_seed(0)
    vocab = character_vocabulary()
    special = {"bos_token_id": vocab[BOS], "eos_token_id": vocab[EOS], "pad_token_id": vocab[EOS]}
    if full:
        text_cfg = CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            **special,
        )
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # SD 1.5 defaults
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
            sample_size=512,
        )
    else:
        text_cfg = CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=768,
            intermediate_size=256,
            num_hidden_layers=1,
            num_attention_heads=4,
            max_position_embeddings=77,
            **special,
        )
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=768,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        # Four blocks, as in SD, so the latent scale factor is 8 and output sizes match requests.
        vae = AutoencoderKL(
            block_out_channels=(32, 32, 64, 64),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=32,
            sample_size=64,
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="epsilon"
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(text_cfg),
        tokenizer=build_tokenizer(vocab),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 1:
        print("usage: make_tiny_sd.py OUT_DIR [--full]", file=sys.stderr)
        return 2
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    build_pipeline(full="--full" in argv).save_pretrained(out, safe_serialization=True)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
