from clips.curricula.base import Curriculum


class NoCurriculum(Curriculum):
    """The baseline: every training patient in every epoch, uniform sampling, unweighted losses."""

    name = "none"
    paper = "baseline (TMTV-Net, Yousefirizi et al. 2024)"
