"""The released TMTV-Net (Yousefirizi et al., 2024), loaded bit for bit from its two files.

    from clips.models.tmtv_net import load_released
    net = load_released(ensemble="e_latest.model", refiner="r_latest.model")  # either may be omitted
    net.stage1(x)             # (N,5,D,H,W) preprocessed channels -> the stacking layer's logits (N,2,D,H,W)
    net.stage1.members[i](x)  # the i-th U-Net alone: the logits of the head inference uses
    net.stage2(x6)            # (N,6,D,H,W), sixth channel = stage-1 probability -> refiner output (N,2,D,H,W)

Our own implementation from the architecture notes (``shared/tmtvnet/ARCHITECTURE.md``); the parameter names
are the released files' keys, so the files load unchanged. The inference pipeline is in ``pipeline.py``.
"""
from clips.models.tmtv_net.loading import TMTVNet, check_matches, load_released

__all__ = ["TMTVNet", "check_matches", "load_released"]
