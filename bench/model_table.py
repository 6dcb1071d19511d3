"""Print the model table of docs/models.md: parameters, GFLOPs per 1080p frame, constraints.

    python bench/model_table.py > /tmp/models_table.md

GFLOPs count every convolution (2 x multiply-accumulates) of one forward pass on a 1088 x 1920
input (1080p padded to the models' multiples), via ``measure.count_flops`` on torch's meta device;
fusion models are counted on a 3-exposure bracket.
"""

from __future__ import annotations

import torch

from hdrlift.engine.models import available
from hdrlift.engine.models.measure import count_flops, count_params

SHAPE = (1, 3, 1088, 1920)


def flops_of(info, net) -> str:
    try:
        if info.kind == "fusion":
            from hdrlift.engine.models import bracket_networks

            call = getattr(bracket_networks, "flops_call", None)
            if call is None:
                return "see notes"
            return f"{count_flops(net, SHAPE, call=call) / 1e9:,.0f}"
        return f"{count_flops(net, SHAPE) / 1e9:,.0f}"
    except Exception as exc:  # a model whose forward does not run on the meta device
        return f"n/a ({type(exc).__name__})"


def main() -> int:
    print("| model | kind | paper | parameters | GFLOPs / 1080p frame | H, W multiple of | weights shipped |")
    print("|---|---|---|---:|---:|---:|---|")
    for info in available():
        net = info.factory()
        params = count_params(net) if isinstance(net, torch.nn.Module) else 0
        gf = flops_of(info, net) if params else "~0 (pointwise/filters)"
        paper = info.paper.split(",")[0].split("(")[0].strip()
        shipped = "yes" if info.has_weights else ("n/a" if not info.needs_weights else "no")
        print(f"| `{info.name}` | {info.kind} | {paper} | {params:,} | {gf} | {info.multiple_of} | {shipped} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
