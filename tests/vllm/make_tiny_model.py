"""Makes a tiny Llama model that vLLM serves on CPU: random weights, a tokenizer trained
here on the repository's own text, and a chat template. No hub download is needed or made.

usage: make_tiny_model.py OUT_DIR TEXT_ROOT
"""
import json
import pathlib
import sys

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

out = pathlib.Path(sys.argv[1])
text_root = pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)

# Any local text will do; the model's answers are gibberish either way.
files = [str(p) for p in sorted(text_root.rglob("*.md")) if "node_modules" not in p.parts and "target" not in p.parts]
files += [str(p) for p in sorted((text_root / "core" / "src").rglob("*.rs"))]
special = ["<unk>", "<s>", "</s>", "<pad>"]
tok = Tokenizer(models.BPE(unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train(files, trainers.BpeTrainer(vocab_size=4096, special_tokens=special,
                                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                               unk_token="<unk>", pad_token="<pad>")
fast.chat_template = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
fast.save_pretrained(out)

torch.manual_seed(0)
config = LlamaConfig(
    vocab_size=4096, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
    bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
    tie_word_embeddings=False, torch_dtype="bfloat16",
)
model = LlamaForCausalLM(config).to(torch.bfloat16)
model.save_pretrained(out, safe_serialization=True)
print(json.dumps({"model": str(out), "vocab": len(fast)}))
