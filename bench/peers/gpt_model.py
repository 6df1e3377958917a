"""The GPT-2-layout model shared by the PyTorch peers (torch_gpt.py,
torch_nextquill.py): token + learned position embeddings, pre-norm blocks with
fused qkv and SDPA causal attention, GELU-tanh MLP, final LayerNorm, tied head.

Import it only after setting the thread environment variables: it imports torch.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(d)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab, layers, heads, d, ctx, **_):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def trunk(self, idx):
        """Residual stream after the last block (before ln_f), (B, T, d)."""
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.blocks:
            x = blk(x)
        return x

    def forward(self, idx):
        """Logits (B, T, V) through the tied head."""
        return F.linear(self.ln_f(self.trunk(idx)), self.wte.weight)

    def target_logits(self, idx, start, n):
        """Tied-head logits of rows start..start+n-1 only, flattened to (B*n, V).

        ln_f is per-row, so applying it to the gathered rows equals gathering
        rows of ln_f(hidden)."""
        rows = self.trunk(idx)[:, start:start + n]
        return F.linear(self.ln_f(rows).reshape(-1, rows.shape[-1]), self.wte.weight)

