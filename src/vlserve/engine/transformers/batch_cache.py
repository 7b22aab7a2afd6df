"""The running batch's model state: a left-padded KV cache that rows join and leave between steps.

TGI's early ``CausalLMBatch`` design, on a transformers ``DynamicCache``. Every row's keys and values
end at the same column (the last decode step), so a row with a shorter history has padding columns
on its left, masked out by the 2-D attention mask (0 = padding), exactly as ``generate`` left-pads a
batch of prompts:

- :meth:`BatchState.merge` adds rows prefilled together (a left-padded batch of their own): the
  narrower side's keys, values and mask get padding columns on the left, then both are concatenated
  along the batch dimension. The running rows' cache is extended, never recomputed;
- :meth:`BatchState.keep` drops the rows that have ended (an index-select on the batch dimension),
  then the leading columns that are padding in every row left;
- :meth:`BatchState.step_inputs` feeds one token per row: the mask gains a column of ones and each
  row gets its own position ids.

Positions are per row. Qwen-VL models take 4 rows of position ids (text, then M-RoPE's temporal,
height and width); after the prompt every one of them moves on by one per token, as ``generate``
extends them (``last + 1``). A row's next text position is the number of its real tokens, its M-RoPE
positions that plus the ``rope_delta`` its images gave it at prefill, so they are kept as a
``(K, rows)`` tensor taken from the prefill's position ids and advanced by one per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache


def _pad_left(tensor: torch.Tensor, columns: int, dim: int) -> torch.Tensor:
    """``columns`` zero columns before ``tensor``'s first along ``dim`` (a negative dim)."""
    if columns == 0:
        return tensor
    pad = [0, 0] * (-dim - 1) + [columns, 0]
    return F.pad(tensor, pad)


@dataclass
class BatchState:
    cache: DynamicCache
    mask: torch.Tensor  # (rows, columns): 1 for a real token in the cache, 0 for padding
    positions: torch.Tensor  # (K, rows) or (rows,): each row's position ids for its next token

    @property
    def size(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    @staticmethod
    def after_prefill(cache: DynamicCache, mask: torch.Tensor, position_ids: torch.Tensor) -> BatchState:
        """The state after a prompt batch's forward: its cache, mask, and the last position ids plus one."""
        return BatchState(cache, mask, position_ids[..., -1] + 1)

    def merge(self, other: BatchState) -> None:
        """Append ``other``'s rows after this state's, left-padding the narrower side's history."""
        width = max(self.width, other.width)
        mine_pad, their_pad = width - self.width, width - other.width
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            for name in ("keys", "values"):
                joined = [_pad_left(getattr(mine, name), mine_pad, -2), _pad_left(getattr(theirs, name), their_pad, -2)]
                setattr(mine, name, torch.cat(joined, dim=0))
        self.mask = torch.cat([_pad_left(self.mask, mine_pad, -1), _pad_left(other.mask, their_pad, -1)])
        self.positions = torch.cat([self.positions, other.positions], dim=-1)

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only ``rows`` (in that order), then trim the columns that are padding in every one of them."""
        if list(rows) == list(range(self.size)):
            return
        index = torch.tensor(list(rows), dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        first = int(mask.any(0).to(torch.int8).argmax()) if len(rows) else 0
        self.mask = mask[:, first:]
        self.positions = self.positions.index_select(-1, index)
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, first:]
            layer.values = layer.values.index_select(0, index)[:, :, first:]

    def step_inputs(self, tokens: torch.Tensor) -> dict:
        """The forward arguments for one decode step feeding ``tokens`` (one per row); advances the state."""
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.size, 1))], dim=-1)
        positions = self.positions.unsqueeze(-1)
        self.positions = self.positions + 1
        return {
            "input_ids": tokens.view(-1, 1),
            "attention_mask": self.mask,
            "position_ids": positions,
            "cache": self.cache,
        }
